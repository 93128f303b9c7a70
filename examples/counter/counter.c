/* counter: an HTTP handler whose state lives in a sealed volume (docs/sealed-state.md).
 *
 * The Keep holds /data in memory and persists it to the host only as encrypted, versioned
 * snapshots the Steward's counter keeps from being rolled back. Each request is a fresh
 * instance (WAGI/CGI style); what one request writes to /data the next one reads.
 *
 *   GET /            add one to the count in /data/count; answer the new count
 *   GET /?flush=0    the same, without asking for a flush: the write is persisted by the
 *                    next snapshot (interval, drain or stop), and the answer promises nothing
 *   GET /count       the count, unchanged
 *   POST /note       keep the body in /data/note (a canary: never on the host in clear)
 *   GET /note        the note back
 *
 * Every request that changes /data creates /data/.motte-flush: the Keep persists the volume
 * (snapshot, fsync, commit to the Steward) before this request's answer leaves, so an
 * answer is the acknowledgement that the write survives a restart or a power cut.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COUNT "/data/count"
#define COUNT_TMP "/data/count.tmp"
#define NOTE "/data/note"
#define FLUSH "/data/.motte-flush"
#define MAX_NOTE (4 * 1024 * 1024)

static const char *env_or(const char *name, const char *fallback) {
    const char *value = getenv(name);
    return (value != NULL) ? value : fallback;
}

static long read_count(void) {
    FILE *f = fopen(COUNT, "r");
    if (f == NULL) return 0;
    long n = 0;
    if (fscanf(f, "%ld", &n) != 1) n = 0;
    fclose(f);
    return n;
}

/* Write to a temporary file and rename it over the old one: the file is whole either way. */
static int write_count(long n) {
    FILE *f = fopen(COUNT_TMP, "w");
    if (f == NULL) return -1;
    fprintf(f, "%ld\n", n);
    if (fclose(f) != 0) return -1;
    return rename(COUNT_TMP, COUNT);
}

/* Ask the Keep to persist /data before this answer is sent. */
static int request_flush(void) {
    FILE *f = fopen(FLUSH, "w");
    if (f == NULL) return -1;
    return fclose(f);
}

static void fail(const char *what) {
    printf("Status: 500 Internal Server Error\nContent-Type: text/plain\n\n%s\n", what);
}

int main(void) {
    const char *method = env_or("REQUEST_METHOD", "GET");
    const char *path = env_or("PATH_INFO", "/");
    if (strcmp(path, "/") == 0 && strcmp(method, "GET") == 0) {
        long n = read_count() + 1;
        int flush = strcmp(env_or("QUERY_STRING", ""), "flush=0") != 0;
        if (write_count(n) != 0 || (flush && request_flush() != 0)) {
            fail("cannot write /data (is the sealed volume there?)");
            return 0;
        }
        printf("Content-Type: text/plain\n\n%ld\n", n);
    } else if (strcmp(path, "/count") == 0 && strcmp(method, "GET") == 0) {
        printf("Content-Type: text/plain\n\n%ld\n", read_count());
    } else if (strcmp(path, "/note") == 0 && strcmp(method, "POST") == 0) {
        static char body[MAX_NOTE];
        size_t m = fread(body, 1, sizeof body, stdin);
        FILE *f = fopen(NOTE, "wb");
        if (f == NULL || fwrite(body, 1, m, f) != m || fclose(f) != 0 || request_flush() != 0) {
            fail("cannot write /data/note");
            return 0;
        }
        printf("Content-Type: text/plain\n\nkept %zu bytes\n", m);
    } else if (strcmp(path, "/note") == 0 && strcmp(method, "GET") == 0) {
        static char body[MAX_NOTE];
        FILE *f = fopen(NOTE, "rb");
        size_t m = 0;
        if (f != NULL) {
            m = fread(body, 1, sizeof body, f);
            fclose(f);
        }
        printf("Content-Type: application/octet-stream\n\n");
        fwrite(body, 1, m, stdout);
    } else {
        printf("Status: 404 Not Found\nContent-Type: text/plain\n\nno such route\n");
    }
    return 0;
}
