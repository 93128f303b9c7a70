/* hello: greets its arguments and shows the environment it was given.
 *
 *   motte run examples/hello -- Alice Bob
 *
 * The greeting comes from the GREETING environment variable (default "Hello"). The guest
 * then lists every environment variable it can see: in a Keep that is exactly what the
 * manifest and --env granted, nothing of the host's.
 */
#include <stdio.h>
#include <stdlib.h>

extern char **environ;

int main(int argc, char **argv) {
    const char *greeting = getenv("GREETING");
    if (greeting == NULL || *greeting == '\0') {
        greeting = "Hello";
    }
    if (argc < 2) {
        printf("%s, world!\n", greeting);
    } else {
        for (int i = 1; i < argc; i++) {
            printf("%s, %s!\n", greeting, argv[i]);
        }
    }
    int n = 0;
    for (char **e = environ; *e != NULL; e++) {
        n++;
    }
    printf("environment: %d variable%s\n", n, n == 1 ? "" : "s");
    for (char **e = environ; *e != NULL; e++) {
        printf("  %s\n", *e);
    }
    return 0;
}
