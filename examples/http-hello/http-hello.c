/* http-hello: an HTTP handler in the WAGI/CGI style. A Keep runs a fresh instance for each
 * request: the request's metadata is in the environment (REQUEST_METHOD, PATH_INFO,
 * QUERY_STRING, HTTP_*, ...), its body on standard input; the answer is header lines, a
 * blank line and the body, on standard output.
 *
 *   motte run examples/http-hello              # serves https://localhost:8443
 *   curl -k https://localhost:8443/?name=Alice
 *   curl -k --data-binary @file https://localhost:8443/echo
 *   curl -k https://localhost:8443/env
 *
 * Routes:
 *   GET /            "Hello, <name>!" (name from ?name=, default "world")
 *   POST /echo       the request body back, with its Content-Type
 *   GET /env         every environment variable this instance was given
 *   anything else    404, or 405 for a known path with another method
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

static const char *env_or(const char *name, const char *fallback) {
    const char *value = getenv(name);
    return (value != NULL) ? value : fallback;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The form-decoded value of `key` in a query string, into `out` (at most size - 1 bytes).
 * Returns 1 if the key was found. Control characters are dropped. */
static int query_param(const char *query, const char *key, char *out, size_t size) {
    size_t key_len = strlen(key);
    const char *p = query;
    while (*p != '\0') {
        const char *end = strchr(p, '&');
        if (end == NULL) end = p + strlen(p);
        if ((size_t)(end - p) > key_len && strncmp(p, key, key_len) == 0 && p[key_len] == '=') {
            size_t n = 0;
            for (const char *v = p + key_len + 1; v < end && n + 1 < size; v++) {
                char c = *v;
                if (c == '+') {
                    c = ' ';
                } else if (c == '%' && v + 2 < end && hex_digit(v[1]) >= 0 &&
                           hex_digit(v[2]) >= 0) {
                    c = (char)(hex_digit(v[1]) * 16 + hex_digit(v[2]));
                    v += 2;
                }
                if ((unsigned char)c >= 0x20 && c != 0x7f) out[n++] = c;
            }
            out[n] = '\0';
            return 1;
        }
        p = (*end == '&') ? end + 1 : end;
    }
    return 0;
}

static int method_is(const char *method, const char *want) { return strcmp(method, want) == 0; }

static void not_allowed(const char *allow) {
    printf("Status: 405 Method Not Allowed\nAllow: %s\nContent-Type: text/plain\n\n", allow);
    printf("method not allowed; use %s\n", allow);
}

static void hello(const char *method) {
    if (!method_is(method, "GET") && !method_is(method, "HEAD")) {
        not_allowed("GET, HEAD");
        return;
    }
    char name[128];
    if (!query_param(env_or("QUERY_STRING", ""), "name", name, sizeof name) || name[0] == '\0') {
        strcpy(name, "world");
    }
    printf("Content-Type: text/plain; charset=utf-8\n\n");
    printf("Hello, %s!\n", name);
}

static void echo(const char *method) {
    if (!method_is(method, "POST") && !method_is(method, "PUT")) {
        not_allowed("POST, PUT");
        return;
    }
    printf("Content-Type: %s\n\n", env_or("CONTENT_TYPE", "application/octet-stream"));
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) {
        fwrite(buf, 1, n, stdout);
    }
}

static void environment(const char *method) {
    if (!method_is(method, "GET") && !method_is(method, "HEAD")) {
        not_allowed("GET, HEAD");
        return;
    }
    printf("Content-Type: text/plain; charset=utf-8\n\n");
    for (char **e = environ; *e != NULL; e++) {
        printf("%s\n", *e);
    }
}

int main(void) {
    const char *method = env_or("REQUEST_METHOD", "GET");
    const char *path = env_or("PATH_INFO", "/");
    if (strcmp(path, "/") == 0) {
        hello(method);
    } else if (strcmp(path, "/echo") == 0) {
        echo(method);
    } else if (strcmp(path, "/env") == 0) {
        environment(method);
    } else {
        printf("Status: 404 Not Found\nContent-Type: text/plain\n\nno such page\n");
    }
    return 0;
}
