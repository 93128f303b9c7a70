/* files: read, list and write files through the directories a Keep preopens.
 *
 *   files cat PATH...        print files
 *   files wc PATH...         lines, words and bytes of each file
 *   files ls DIR             list a directory
 *   files write PATH TEXT    write TEXT (and a newline) to PATH, replacing it
 *
 * A guest sees only the directories its manifest grants ([[dir]]), read-only unless
 * `writable = true`. Everything else fails with the WASI error, printed on stderr, and
 * exit status 1.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static int fail(const char *what, const char *path) {
    fprintf(stderr, "files: %s %s: %s\n", what, path, strerror(errno));
    return 1;
}

static int cat(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return fail("cannot open", path);
    }
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        fwrite(buf, 1, n, stdout);
    }
    int bad = ferror(f);
    fclose(f);
    return bad ? fail("cannot read", path) : 0;
}

static int wc(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return fail("cannot open", path);
    }
    unsigned long long lines = 0, words = 0, bytes = 0;
    int in_word = 0;
    static unsigned char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        bytes += n;
        for (size_t i = 0; i < n; i++) {
            unsigned char c = buf[i];
            lines += c == '\n';
            int space = c == ' ' || (c >= '\t' && c <= '\r');
            words += !space && !in_word;
            in_word = !space;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        return fail("cannot read", path);
    }
    printf("%8llu %8llu %8llu %s\n", lines, words, bytes, path);
    return 0;
}

static int ls(const char *path) {
    DIR *d = opendir(path);
    if (d == NULL) {
        return fail("cannot open directory", path);
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            printf("%s\n", e->d_name);
        }
    }
    closedir(d);
    return 0;
}

static int write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        return fail("cannot create", path);
    }
    int bad = fprintf(f, "%s\n", text) < 0;
    bad |= fclose(f) != 0;
    return bad ? fail("cannot write", path) : 0;
}

static int usage(void) {
    fprintf(stderr, "usage: files cat|wc PATH... | ls DIR | write PATH TEXT\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        return usage();
    }
    const char *cmd = argv[1];
    int status = 0;
    if (strcmp(cmd, "cat") == 0 || strcmp(cmd, "wc") == 0) {
        for (int i = 2; i < argc; i++) {
            status |= cmd[0] == 'c' ? cat(argv[i]) : wc(argv[i]);
        }
        return status;
    }
    if (strcmp(cmd, "ls") == 0 && argc == 3) {
        return ls(argv[2]);
    }
    if (strcmp(cmd, "write") == 0 && argc == 4) {
        return write_file(argv[2], argv[3]);
    }
    return usage();
}
