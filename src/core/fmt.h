/* Small number formatters (and the hex digit reader) for the hot paths, where printf's
 * parsing and locale work cost more than the formatting itself. Header-only; thread: any. */
#ifndef CMX_CORE_FMT_H
#define CMX_CORE_FMT_H

#include <stddef.h>
#include <stdint.h>

/* Room cmx_fmt_u64 may need: 20 digits. */
#define CMX_FMT_U64_MAX 20

/* Writes the decimal digits of v so that they end just before end (at most
 * CMX_FMT_U64_MAX bytes before it); returns where they start. No NUL. */
static inline char *cmx_fmt_u64(char *end, uint64_t v)
{
    char *p = end;
    do
        *--p = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    return p;
}

/* Writes the low `digits` hex digits of v (lowercase, zero-padded) at out; returns the end.
 * No NUL. */
static inline char *cmx_fmt_hex(char *out, uint64_t v, int digits)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = digits - 1; i >= 0; i--, v >>= 4)
        out[i] = hex[v & 15];
    return out + digits;
}

/* Writes the n bytes of in as 2n lowercase hex digits and a NUL into out. */
static inline void cmx_hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* The value of hex digit c (either case), or -1. */
static inline int cmx_hex_val(unsigned c)
{
    if (c - '0' < 10u)
        return (int)(c - '0');
    c |= 0x20;
    if (c - 'a' < 6u)
        return (int)(c - 'a' + 10);
    return -1;
}

#endif
