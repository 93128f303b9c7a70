/* motte_connect.h: outbound connections from a motte Keep (docs/running.md, "Outbound
 * connections"). A guest opens a destination its Motte.toml declares ([[connect]]) and the
 * host grants, by name, and gets a plain-text stream: the Keep connects, speaks TLS and
 * checks the server. Every call returns a negative WASI errno on failure (the numbers of
 * wasi-libc's <errno.h>, so strerror(-rc) names it); motte_connect_last_error() copies a
 * one-line reason. */
#ifndef MOTTE_CONNECT_H
#define MOTTE_CONNECT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MOTTE_IMPORT(name) __attribute__((import_module("motte_connect"), import_name(name)))

/* A handle >= 0, or -EACCES (not granted), -EMFILE / -EDQUOT (limits.connections /
 * limits.connections_total), -ECONNREFUSED, -EHOSTUNREACH, -ETIMEDOUT, -EPROTO (TLS). */
MOTTE_IMPORT("open") int32_t motte_connect_open_(const char *name, size_t len);
/* Bytes read into buf (at least 1, blocking until they come), 0 when the server closed. */
MOTTE_IMPORT("read") int32_t motte_connect_read(int32_t handle, void *buf, size_t len);
/* Sends all len bytes: returns len, or -errno (-EFBIG: limits.connection_bytes). */
MOTTE_IMPORT("write") int32_t motte_connect_write(int32_t handle, const void *buf, size_t len);
MOTTE_IMPORT("close") int32_t motte_connect_close(int32_t handle);
/* The reason for the last failure, copied up to len bytes; returns its full length. */
MOTTE_IMPORT("last_error") int32_t motte_connect_last_error(char *buf, size_t len);

static inline int32_t motte_connect_open(const char *name) {
    return motte_connect_open_(name, strlen(name));
}

#endif
