#include "router/retry.h"
#include "core/err.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

bool cmx_retry_status(int status)
{
    switch (status) {
    case 408:
    case 409:
    case 429:
    case 500:
    case 502:
    case 503:
    case 504:
    case 529:
        return true;
    default:
        return false;
    }
}

int cmx_http_date_parse(const char *s, uint64_t *unix_ms)
{
    static const char *const fmts[] = {
        "%a, %d %b %Y %H:%M:%S GMT", /* IMF-fixdate */
        "%A, %d-%b-%y %H:%M:%S GMT", /* RFC 850 */
        "%a %b %e %H:%M:%S %Y",      /* asctime */
    };
    for (size_t i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
        struct tm tm;
        memset(&tm, 0, sizeof(tm));
        const char *end = strptime(s, fmts[i], &tm);
        if (end == NULL)
            continue;
        while (*end == ' ')
            end++;
        if (*end != '\0')
            continue;
        time_t t = timegm(&tm);
        if (t < 0)
            return CMX_EINVAL;
        *unix_ms = (uint64_t)t * 1000u;
        return 0;
    }
    return CMX_EINVAL;
}

/* Parses a non-negative decimal number of units (fraction allowed) into thousandths. */
static int parse_thousandths(const char *s, int64_t *out)
{
    int64_t v = 0;
    int frac = -1;
    const char *p = s;
    if (*p == '\0')
        return CMX_EINVAL;
    for (; *p; p++) {
        if (*p == '.' && frac < 0) {
            frac = 0;
            continue;
        }
        if (*p < '0' || *p > '9')
            return CMX_EINVAL;
        if (frac >= 3)
            continue;
        /* saturate: a delay of more than ~31,000 years is "for ever" all the same, and the
         * final scaling below must not overflow */
        if (v >= 100000000000000LL) {
            v = 100000000000000LL;
            if (frac >= 0)
                frac++;
            continue;
        }
        v = v * 10 + (*p - '0');
        if (frac >= 0)
            frac++;
    }
    for (int f = frac < 0 ? 0 : frac; f < 3; f++)
        v *= 10;
    *out = v;
    return 0;
}

void cmx_retry_hint_parse(const struct cmx_http_header *h, size_t n, uint64_t now_unix_ms,
                          struct cmx_retry_hint *out)
{
    out->after_ms = -1;
    out->should = -1;
    const char *ms = NULL, *secs = NULL;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(h[i].name, "retry-after-ms") == 0)
            ms = h[i].value;
        else if (strcmp(h[i].name, "retry-after") == 0)
            secs = h[i].value;
        else if (strcmp(h[i].name, "x-should-retry") == 0)
            out->should = strcasecmp(h[i].value, "true") == 0    ? 1
                          : strcasecmp(h[i].value, "false") == 0 ? 0
                                                                 : -1;
    }
    int64_t v;
    if (ms != NULL && parse_thousandths(ms, &v) == 0) {
        out->after_ms = v / 1000; /* thousandths of a millisecond */
        return;
    }
    if (secs != NULL) {
        if (parse_thousandths(secs, &v) == 0) {
            out->after_ms = v;
            return;
        }
        uint64_t at;
        if (cmx_http_date_parse(secs, &at) == 0)
            out->after_ms = at > now_unix_ms ? (int64_t)(at - now_unix_ms) : 0;
    }
}

uint64_t cmx_backoff_ms(int attempt, uint64_t base_ms, uint64_t cap_ms, uint64_t rnd)
{
    uint64_t ceil = base_ms;
    for (int i = 1; i < attempt && ceil < cap_ms; i++)
        ceil *= 2;
    if (ceil > cap_ms)
        ceil = cap_ms;
    return ceil == 0 ? 0 : rnd % (ceil + 1);
}
