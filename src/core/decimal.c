#include "core/decimal.h"
#include "core/err.h"

#include <stdbool.h>
#include <string.h>

/* Magnitudes are accumulated as uint64_t so that INT64_MIN (whose magnitude is one more
 * than INT64_MAX) parses and formats without signed overflow. */
#define MAG_POS_MAX ((uint64_t)INT64_MAX)
#define MAG_NEG_MAX ((uint64_t)INT64_MAX + 1u)

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* mag = mag * 10 + d, failing when the result would exceed limit. */
static bool push_digit(uint64_t *mag, unsigned d, uint64_t limit)
{
    if (*mag > (limit - d) / 10)
        return false;
    *mag = *mag * 10 + d;
    return true;
}

int cmx_decimal_parse(const char *s, size_t len, int scale, int64_t *out)
{
    size_t i = 0;
    bool neg = false;
    uint64_t mag = 0;

    if (s == NULL || scale < 0 || scale > CMX_DECIMAL_MAX_SCALE)
        return CMX_EINVAL;
    if (i < len && s[i] == '-') {
        neg = true;
        i++;
    }
    uint64_t limit = neg ? MAG_NEG_MAX : MAG_POS_MAX;

    /* Integer part: at least one digit (".5" and "-" are rejected). */
    size_t int_start = i;
    while (i < len && is_digit(s[i])) {
        if (!push_digit(&mag, (unsigned)(s[i] - '0'), limit))
            return CMX_EINVAL;
        i++;
    }
    if (i == int_start)
        return CMX_EINVAL;

    /* Fraction: optional, but a '.' must be followed by at least one digit ("5." is
     * rejected). Digits beyond scale are accepted only when they are zeros. */
    int frac = 0;
    if (i < len && s[i] == '.') {
        i++;
        size_t frac_start = i;
        while (i < len && is_digit(s[i])) {
            unsigned d = (unsigned)(s[i] - '0');
            if (frac < scale) {
                if (!push_digit(&mag, d, limit))
                    return CMX_EINVAL;
                frac++;
            } else if (d != 0) {
                return CMX_EINVAL;
            }
            i++;
        }
        if (i == frac_start)
            return CMX_EINVAL;
    }
    if (i != len)
        return CMX_EINVAL; /* exponent, second '.', sign in the middle, spaces, NUL... */

    for (; frac < scale; frac++) {
        if (!push_digit(&mag, 0, limit))
            return CMX_EINVAL;
    }
    if (neg)
        *out = mag == MAG_NEG_MAX ? INT64_MIN : -(int64_t)mag;
    else
        *out = (int64_t)mag;
    return 0;
}

size_t cmx_decimal_format(int64_t v, int scale, char *buf, size_t bufsize)
{
    char tmp[48];
    char *p = tmp + sizeof(tmp);
    uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    int digits = 0;

    if (buf == NULL || bufsize == 0)
        return 0;
    if (scale < 0 || scale > CMX_DECIMAL_MAX_SCALE) {
        buf[0] = '\0';
        return 0;
    }
    /* Emit digits right to left: the scale fraction digits, the point, then at least one
     * integer digit. */
    do {
        if (digits == scale && scale > 0)
            *--p = '.';
        *--p = (char)('0' + mag % 10);
        mag /= 10;
        digits++;
    } while (mag != 0 || digits <= scale);
    if (v < 0)
        *--p = '-';

    size_t n = (size_t)(tmp + sizeof(tmp) - p);
    if (n > bufsize - 1)
        n = bufsize - 1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return n;
}
