/* Exact decimal text <-> scaled integers, for money and rates. Never floating point. */
#ifndef CMX_CORE_DECIMAL_H
#define CMX_CORE_DECIMAL_H

#include <stddef.h>
#include <stdint.h>

/* Parses an unsigned or negative decimal ("2.5", "10", "-0.075", "1000000.00") into an
 * integer scaled by 10^scale (scale 6: micro-units). Rejects empty text, exponents, more
 * fraction digits than scale unless they are all zeros, and overflow of int64.
 * Returns 0 or CMX_EINVAL. */
int cmx_decimal_parse(const char *s, size_t len, int scale, int64_t *out);

/* Formats v / 10^scale as exact decimal text with exactly scale fraction digits
 * ("12.345678"), into buf (at least 32 bytes). Returns the length written. */
size_t cmx_decimal_format(int64_t v, int scale, char *buf, size_t bufsize);

#endif
