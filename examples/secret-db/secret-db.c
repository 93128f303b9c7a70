/* secret-db: an HTTP handler that needs a database password, and gets it only in a Keep
 * the Steward released it to. The password arrives as a file on a memory-backed directory
 * (/run/secrets/db-password) and as the environment variable DB_PASSWORD, both from
 * [[secret]] entries of its Motte.toml; the handler never prints it.
 *
 *   GET /          what it was given: where the password came from, how long it is, and
 *                  whether the two copies agree (never the password itself)
 *   POST /check    the body compared with the password: "match" or "no match" (how a
 *                  client shows the Keep holds the right one without anyone seeing it)
 *
 * A fresh instance answers each request, in the WAGI/CGI style of examples/http-hello.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECRET_FILE "/run/secrets/db-password"
#define MAX_SECRET 4096

/* A marker the canary tests look for: it must never appear in clear on the host, in the
 * registry or in the compiled-artifact cache when the module is packaged --encrypt. Read
 * through a volatile pointer so the compiler keeps the bytes; never printed. */
static const char MODULE_CANARY[] = "motte-module-canary:7d0c59e2b1a84f36c1e5";
static const char *volatile module_marker = MODULE_CANARY;

static const char *env_or(const char *name, const char *fallback) {
    const char *value = getenv(name);
    return (value != NULL) ? value : fallback;
}

/* The secret file's bytes into buf; their count, or -1 if it cannot be read. */
static long read_secret(char *buf, size_t size) {
    FILE *f = fopen(SECRET_FILE, "rb");
    if (f == NULL) return -1;
    size_t n = fread(buf, 1, size, f);
    fclose(f);
    return (long)n;
}

/* Compare without stopping at the first difference. */
static int same(const char *a, size_t alen, const char *b, size_t blen) {
    unsigned char diff = (unsigned char)(alen != blen);
    for (size_t i = 0; i < alen && i < blen; i++) diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

static void status(void) {
    char secret[MAX_SECRET];
    long n = read_secret(secret, sizeof secret);
    const char *env = getenv("DB_PASSWORD");
    printf("Content-Type: text/plain; charset=utf-8\n\n");
    if (n < 0) {
        printf("no database password: %s is not there (no Steward released it)\n", SECRET_FILE);
        return;
    }
    printf("connected to the database as app: password from %s (%ld bytes)\n", SECRET_FILE, n);
    if (env == NULL) {
        printf("DB_PASSWORD: not in the environment\n");
    } else {
        printf("DB_PASSWORD: %s\n", same(secret, (size_t)n, env, strlen(env)) ? "the same value"
                                                                                : "DIFFERENT");
    }
    printf("build marker: %zu bytes\n", strlen(module_marker));
}

static void check(void) {
    char secret[MAX_SECRET], body[MAX_SECRET];
    long n = read_secret(secret, sizeof secret);
    size_t m = fread(body, 1, sizeof body, stdin);
    printf("Content-Type: text/plain; charset=utf-8\n\n");
    printf("%s\n", n >= 0 && same(secret, (size_t)n, body, m) ? "match" : "no match");
}

int main(void) {
    const char *method = env_or("REQUEST_METHOD", "GET");
    const char *path = env_or("PATH_INFO", "/");
    if (strcmp(path, "/") == 0 && strcmp(method, "GET") == 0) {
        status();
    } else if (strcmp(path, "/check") == 0 && strcmp(method, "POST") == 0) {
        check();
    } else {
        printf("Status: 404 Not Found\nContent-Type: text/plain\n\nGET / or POST /check\n");
    }
    return 0;
}
