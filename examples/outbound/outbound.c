/* outbound: calls a granted destination through the Keep (motte_connect.h).
 *
 *   get NAME PATH [COUNT]
 *                    an HTTPS GET of PATH on destination NAME, with the API token from the
 *                    environment (API_TOKEN) as a bearer token; prints the status line and
 *                    the body; exits 0 for a 2xx answer, 1 otherwise. With COUNT, makes
 *                    the request COUNT times, a connection each, and prints the last answer
 *                    (bench/outbound.py)
 *   send NAME        sends standard input to NAME, then copies what comes back to standard
 *                    output until the server closes
 *   flood NAME N     opens N connections to NAME and keeps them open; prints how many opened
 *   churn NAME N     opens and closes N connections, one at a time; prints how many opened
 *
 * Failures print the Keep's reason and exit with the errno (a WASI errno, 1 to 76). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "motte_connect.h"

static int fail(const char *what, int32_t rc) {
    char reason[512];
    int32_t n = motte_connect_last_error(reason, sizeof reason - 1);
    reason[n < 0 ? 0 : (n < (int32_t)sizeof reason - 1 ? n : (int32_t)sizeof reason - 1)] = 0;
    fprintf(stderr, "outbound: %s: %s (%s)\n", what, strerror((int)-rc), reason);
    return (int)-rc;
}

static int write_all(int32_t h, const char *buf, size_t len) {
    int32_t rc = motte_connect_write(h, buf, len);
    return rc < 0 ? fail("write", rc) : 0;
}

static int get(const char *name, const char *path, int quiet) {
    const char *token = getenv("API_TOKEN");
    const char *host = getenv("API_HOST");
    char request[2048];
    int32_t h = motte_connect_open(name);
    if (h < 0) return fail("open", h);
    int len = snprintf(request, sizeof request,
                       "GET %s HTTP/1.1\r\nHost: %s\r\n%s%s%sConnection: close\r\n\r\n", path,
                       host ? host : name, token ? "Authorization: Bearer " : "",
                       token ? token : "", token ? "\r\n" : "");
    if (len < 0 || len >= (int)sizeof request) return 1;
    int err = write_all(h, request, (size_t)len);
    if (err) return err;
    static char answer[1 << 16];
    size_t got = 0;
    for (;;) {
        int32_t n = motte_connect_read(h, answer + got, sizeof answer - 1 - got);
        if (n < 0) return fail("read", n);
        if (n == 0 || got + (size_t)n >= sizeof answer - 1) {
            got += (size_t)(n > 0 ? n : 0);
            break;
        }
        got += (size_t)n;
    }
    answer[got] = 0;
    motte_connect_close(h);
    char *end = strstr(answer, "\r\n");
    char *body = strstr(answer, "\r\n\r\n");
    if (!end || !body) {
        fprintf(stderr, "outbound: not an HTTP answer\n");
        return 1;
    }
    *end = 0;
    if (!quiet) printf("%s\n%s", answer, body + 4);
    return strncmp(answer + 8, " 2", 2) == 0 ? 0 : 1;
}

static int send_stdin(const char *name) {
    int32_t h = motte_connect_open(name);
    if (h < 0) return fail("open", h);
    static char buf[1 << 16];
    ssize_t n;
    while ((n = read(0, buf, sizeof buf)) > 0) {
        int err = write_all(h, buf, (size_t)n);
        if (err) return err;
    }
    int32_t got;
    while ((got = motte_connect_read(h, buf, sizeof buf)) > 0) fwrite(buf, 1, (size_t)got, stdout);
    if (got < 0) return fail("read", got);
    return motte_connect_close(h) < 0 ? 1 : 0;
}

static int many(const char *name, long count, int keep_open) {
    long opened = 0;
    int32_t rc = 0;
    for (long i = 0; i < count; i++) {
        rc = motte_connect_open(name);
        if (rc < 0) break;
        opened++;
        if (!keep_open) motte_connect_close(rc);
    }
    printf("opened %ld of %ld\n", opened, count);
    return rc < 0 ? fail("open", rc) : 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "get") == 0) return get(argv[2], argv[3], 0);
    if (argc == 5 && strcmp(argv[1], "get") == 0) {
        long count = atol(argv[4]);
        for (long i = 1; i < count; i++) {
            int rc = get(argv[2], argv[3], 1);
            if (rc) return rc;
        }
        return get(argv[2], argv[3], 0);
    }
    if (argc == 3 && strcmp(argv[1], "send") == 0) return send_stdin(argv[2]);
    if (argc == 4 && strcmp(argv[1], "flood") == 0) return many(argv[2], atol(argv[3]), 1);
    if (argc == 4 && strcmp(argv[1], "churn") == 0) return many(argv[2], atol(argv[3]), 0);
    fprintf(stderr,
            "usage: outbound get NAME PATH [COUNT] | send NAME | flood NAME N | churn NAME N\n");
    return 2;
}
