#include "core/clock.h"
#include "core/err.h"

#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

/* frozen + 1, or 0 while the clock runs (so that the epoch itself can be frozen). */
static _Atomic uint64_t frozen_plus_one;

uint64_t cmx_clock_now_ms(void)
{
    uint64_t f = atomic_load_explicit(&frozen_plus_one, memory_order_relaxed);
    struct timespec ts;

    if (f != 0)
        return f - 1;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void cmx_clock_freeze(uint64_t unix_ms)
{
    atomic_store_explicit(&frozen_plus_one, unix_ms + 1, memory_order_relaxed);
}

void cmx_clock_unfreeze(void)
{
    atomic_store_explicit(&frozen_plus_one, 0, memory_order_relaxed);
}

bool cmx_clock_frozen(void)
{
    return atomic_load_explicit(&frozen_plus_one, memory_order_relaxed) != 0;
}

int64_t cmx_clock_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* Inverse of cmx_clock_days_from_civil (Hinnant's civil_from_days). */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static bool leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned month_days(int64_t y, unsigned m)
{
    static const unsigned days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && leap(y) ? 29 : days[m - 1];
}

/* Reads exactly n digits at s[*i]. */
static bool digits(const char *s, size_t len, size_t *i, size_t n, unsigned *out)
{
    unsigned v = 0;
    if (*i + n > len)
        return false;
    for (size_t k = 0; k < n; k++) {
        char c = s[*i + k];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (unsigned)(c - '0');
    }
    *i += n;
    *out = v;
    return true;
}

static bool expect(const char *s, size_t len, size_t *i, char c)
{
    if (*i >= len || s[*i] != c)
        return false;
    (*i)++;
    return true;
}

/* "YYYY-MM-DD" at the start of s; *i past it; *days since the epoch. */
static bool date_part(const char *s, size_t len, size_t *i, int64_t *days)
{
    unsigned y, m, d;
    if (!digits(s, len, i, 4, &y) || !expect(s, len, i, '-') || !digits(s, len, i, 2, &m) ||
        !expect(s, len, i, '-') || !digits(s, len, i, 2, &d))
        return false;
    if (y < 1970 || m < 1 || m > 12 || d < 1 || d > month_days(y, m))
        return false;
    *days = cmx_clock_days_from_civil(y, m, d);
    return true;
}

/* Largest instant accepted: 9999-12-31T23:59:59.999Z. */
#define MAX_MS (cmx_clock_days_from_civil(10000, 1, 1) * CMX_CLOCK_DAY_MS - 1)

int cmx_clock_parse_date(const char *s, size_t len, int64_t *ms)
{
    size_t i = 0;
    int64_t days;
    if (s == NULL || !date_part(s, len, &i, &days) || i != len)
        return CMX_EINVAL;
    *ms = days * CMX_CLOCK_DAY_MS;
    return 0;
}

int cmx_clock_parse_iso(const char *s, size_t len, int64_t *ms, bool *is_date)
{
    size_t i = 0;
    int64_t days, v;
    unsigned hh, mm, ss = 0, frac = 0;

    if (s == NULL || !date_part(s, len, &i, &days))
        return CMX_EINVAL;
    if (i == len) {
        *ms = days * CMX_CLOCK_DAY_MS;
        if (is_date != NULL)
            *is_date = true;
        return 0;
    }
    if (s[i] != 'T' && s[i] != 't')
        return CMX_EINVAL;
    i++;
    if (!digits(s, len, &i, 2, &hh) || !expect(s, len, &i, ':') || !digits(s, len, &i, 2, &mm))
        return CMX_EINVAL;
    if (i < len && s[i] == ':') {
        i++;
        if (!digits(s, len, &i, 2, &ss))
            return CMX_EINVAL;
        if (i < len && s[i] == '.') {
            size_t start = ++i;
            unsigned scale = 100;
            while (i < len && s[i] >= '0' && s[i] <= '9') {
                frac += (unsigned)(s[i] - '0') * scale;
                scale /= 10;
                i++;
            }
            if (i == start)
                return CMX_EINVAL;
        }
    }
    if (hh > 23 || mm > 59 || ss > 59) /* no leap seconds */
        return CMX_EINVAL;
    v = days * CMX_CLOCK_DAY_MS + (int64_t)hh * 3600000 + (int64_t)mm * 60000 + (int64_t)ss * 1000 +
        frac;
    if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i < len && (s[i] == '+' || s[i] == '-')) {
        int sign = s[i] == '+' ? 1 : -1;
        unsigned oh, om;
        i++;
        if (!digits(s, len, &i, 2, &oh) || !expect(s, len, &i, ':') ||
            !digits(s, len, &i, 2, &om) || oh > 23 || om > 59)
            return CMX_EINVAL;
        v -= sign * ((int64_t)oh * 3600000 + (int64_t)om * 60000);
    } else {
        return CMX_EINVAL; /* a time without a zone is ambiguous: require Z */
    }
    if (i != len || v < 0 || v > MAX_MS)
        return CMX_EINVAL;
    *ms = v;
    if (is_date != NULL)
        *is_date = false;
    return 0;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

int64_t cmx_clock_day_start(int64_t ms)
{
    return floor_div(ms, CMX_CLOCK_DAY_MS) * CMX_CLOCK_DAY_MS;
}

size_t cmx_clock_format_date(int64_t ms, char *buf, size_t cap)
{
    int64_t y;
    unsigned m, d;
    civil_from_days(floor_div(ms, CMX_CLOCK_DAY_MS), &y, &m, &d);
    int n = snprintf(buf, cap, "%04lld-%02u-%02u", (long long)y, m, d);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

size_t cmx_clock_format_iso(int64_t ms, char *buf, size_t cap)
{
    int64_t y, rem = ms - cmx_clock_day_start(ms);
    unsigned m, d;
    int n;

    civil_from_days(floor_div(ms, CMX_CLOCK_DAY_MS), &y, &m, &d);
    unsigned h = (unsigned)(rem / 3600000), mi = (unsigned)(rem / 60000 % 60),
             s = (unsigned)(rem / 1000 % 60), f = (unsigned)(rem % 1000);
    if (f != 0)
        n = snprintf(buf, cap, "%04lld-%02u-%02uT%02u:%02u:%02u.%03uZ", (long long)y, m, d, h, mi,
                     s, f);
    else
        n = snprintf(buf, cap, "%04lld-%02u-%02uT%02u:%02u:%02uZ", (long long)y, m, d, h, mi, s);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

size_t cmx_clock_format_short(int64_t ms, char *buf, size_t cap)
{
    if (ms == cmx_clock_day_start(ms))
        return cmx_clock_format_date(ms, buf, cap);
    return cmx_clock_format_iso(ms, buf, cap);
}
