/* Exact decimal text <-> scaled integers, for money and rates. Never floating point. */
#ifndef CMX_CORE_DECIMAL_H
#define CMX_CORE_DECIMAL_H

#include <stddef.h>
#include <stdint.h>

/* Largest scale the functions below accept (10^18 still fits in an int64_t). */
#define CMX_DECIMAL_MAX_SCALE 18

/* Parses an unsigned or negative decimal ("2.5", "10", "-0.075", "1000000.00") into an
 * integer scaled by 10^scale (scale 6: micro-units). Rejects empty text, exponents, more
 * fraction digits than scale unless they are all zeros, and overflow of int64.
 * Grammar, exactly: ['-'] DIGIT+ ['.' DIGIT+]. So a leading '+', a bare or leading '.'
 * (".5"), a trailing '.' ("5."), spaces and anything after the digits are rejected.
 * s need not be NUL-terminated; only len bytes are read. scale: 0..CMX_DECIMAL_MAX_SCALE.
 * *out is written only on success. Returns 0 or CMX_EINVAL. Thread: any. */
int cmx_decimal_parse(const char *s, size_t len, int scale, int64_t *out);

/* Formats v / 10^scale as exact decimal text with exactly scale fraction digits
 * ("12.345678", "-0.500000"; no '.' when scale is 0), into buf (at least 32 bytes; the
 * output is NUL-terminated and truncated to bufsize - 1 bytes if buf is smaller). The text
 * parses back to v with cmx_decimal_parse at the same scale, INT64_MIN/MAX included.
 * Returns the length written (without the NUL); 0 when scale is out of range. */
size_t cmx_decimal_format(int64_t v, int scale, char *buf, size_t bufsize);

#endif
