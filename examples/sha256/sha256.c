/* sha256: a compute workload, SHA-256 over N MiB of generated data (default 64).
 *
 *   sha256 [MIB]
 *
 * The input is one 1 MiB block, byte i = (i * 2654435761) >> 24 (mod 2^32), hashed MIB
 * times in a row, so the guest does no I/O and the answer is easy to check elsewhere:
 *
 *   python3 -c "import hashlib; b = bytes(((i * 2654435761) % 2**32) >> 24 for i in
 *               range(1 << 20)); print(hashlib.sha256(b * 64).hexdigest())"
 *
 * The same file builds natively (cc -O2 sha256.c) for bench/compute.py, which compares
 * the two. Portable C, no intrinsics: FIPS 180-4, section 6.2.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint32_t h[8];
    uint64_t length; /* bytes hashed so far */
    uint8_t buf[64];
    size_t used;
} sha256_ctx;

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2,
};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

/* FIPS 180-4 6.2.2 with the message schedule kept in a 16-word ring and computed as the
 * rounds need it, sixteen rounds per loop iteration: the usual way to write SHA-256. With
 * the ring index constant in each unrolled round, the compiler keeps the schedule in
 * registers, and the loop has one back-edge per sixteen rounds. */
#define S0(x) (ROTR(x, 7) ^ ROTR(x, 18) ^ ((x) >> 3))
#define S1(x) (ROTR(x, 17) ^ ROTR(x, 19) ^ ((x) >> 10))
#define W(i) w[(i) & 15]
#define NEXT(i) (W(i) += S1(W((i) + 14)) + W((i) + 9) + S0(W((i) + 1)))
#define ROUND(a, b, c, d, e, f, g, h, k, wi)                                               \
    do {                                                                                   \
        uint32_t t1 = h + (ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25)) + ((e & f) ^ (~e & g)) + \
                      (k) + (wi);                                                          \
        uint32_t t2 = (ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22)) +                           \
                      ((a & b) ^ (a & c) ^ (b & c));                                       \
        d += t1;                                                                           \
        h = t1 + t2;                                                                       \
    } while (0)
#define SIXTEEN(j, WORD)                                                                   \
    do {                                                                                   \
        ROUND(a, b, c, d, e, f, g, hh, K[(j) + 0], WORD(0));                               \
        ROUND(hh, a, b, c, d, e, f, g, K[(j) + 1], WORD(1));                               \
        ROUND(g, hh, a, b, c, d, e, f, K[(j) + 2], WORD(2));                               \
        ROUND(f, g, hh, a, b, c, d, e, K[(j) + 3], WORD(3));                               \
        ROUND(e, f, g, hh, a, b, c, d, K[(j) + 4], WORD(4));                               \
        ROUND(d, e, f, g, hh, a, b, c, K[(j) + 5], WORD(5));                               \
        ROUND(c, d, e, f, g, hh, a, b, K[(j) + 6], WORD(6));                               \
        ROUND(b, c, d, e, f, g, hh, a, K[(j) + 7], WORD(7));                               \
        ROUND(a, b, c, d, e, f, g, hh, K[(j) + 8], WORD(8));                               \
        ROUND(hh, a, b, c, d, e, f, g, K[(j) + 9], WORD(9));                               \
        ROUND(g, hh, a, b, c, d, e, f, K[(j) + 10], WORD(10));                             \
        ROUND(f, g, hh, a, b, c, d, e, K[(j) + 11], WORD(11));                             \
        ROUND(e, f, g, hh, a, b, c, d, K[(j) + 12], WORD(12));                             \
        ROUND(d, e, f, g, hh, a, b, c, K[(j) + 13], WORD(13));                             \
        ROUND(c, d, e, f, g, hh, a, b, K[(j) + 14], WORD(14));                             \
        ROUND(b, c, d, e, f, g, hh, a, K[(j) + 15], WORD(15));                             \
    } while (0)

static void compress(uint32_t h[8], const uint8_t *p) {
    uint32_t w[16];
    for (int i = 0; i < 16; i++) {
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
#define LOADED(i) W(i)
    SIXTEEN(0, LOADED);
    for (int j = 16; j < 64; j += 16) {
        SIXTEEN(j, NEXT);
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += hh;
}

static void sha256_init(sha256_ctx *c) {
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, iv, sizeof iv);
    c->length = 0;
    c->used = 0;
}

static void sha256_update(sha256_ctx *c, const uint8_t *p, size_t n) {
    c->length += n;
    if (c->used > 0) {
        size_t take = 64 - c->used < n ? 64 - c->used : n;
        memcpy(c->buf + c->used, p, take);
        c->used += take;
        p += take;
        n -= take;
        if (c->used < 64) {
            return;
        }
        compress(c->h, c->buf);
        c->used = 0;
    }
    for (; n >= 64; p += 64, n -= 64) {
        compress(c->h, p);
    }
    memcpy(c->buf, p, n);
    c->used = n;
}

static void sha256_final(sha256_ctx *c, uint8_t out[32]) {
    uint64_t bits = c->length * 8;
    uint8_t pad[72] = {0x80};
    size_t padlen = c->used < 56 ? 56 - c->used : 120 - c->used;
    for (int i = 0; i < 8; i++) {
        pad[padlen + i] = (uint8_t)(bits >> (56 - 8 * i));
    }
    sha256_update(c, pad, padlen + 8);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(c->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(c->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(c->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)c->h[i];
    }
}

#define BLOCK (1u << 20)

int main(int argc, char **argv) {
    long mib = 64;
    if (argc > 1) {
        char *end;
        mib = strtol(argv[1], &end, 10);
        if (*end != '\0' || mib < 0 || mib > 1L << 20) {
            fprintf(stderr, "usage: sha256 [MIB], MIB a whole number from 0 to 1048576\n");
            return 2;
        }
    }
    static uint8_t block[BLOCK];
    for (uint32_t i = 0; i < BLOCK; i++) {
        block[i] = (uint8_t)((i * 2654435761u) >> 24);
    }
    sha256_ctx c;
    sha256_init(&c);
    for (long i = 0; i < mib; i++) {
        sha256_update(&c, block, BLOCK);
    }
    uint8_t digest[32];
    sha256_final(&c, digest);
    for (int i = 0; i < 32; i++) {
        printf("%02x", digest[i]);
    }
    printf("  %ld MiB\n", mib);
    return 0;
}
