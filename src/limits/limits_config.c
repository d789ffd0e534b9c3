/* The `limits:` setting: "memory", "redis://[[user]:password@]host[:port][/db]" or the map
 * {url, on_error, timeout_ms}. Messages never quote the user or the password. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/err.h"
#include "limits/limits.h"

static int fail(char *err, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t cap, const char *fmt, ...)
{
    if (err != NULL && cap > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, cap, fmt, ap);
        va_end(ap);
    }
    return CMX_ECONFIG;
}

static bool eq(const char *s, size_t len, const char *lit)
{
    return strlen(lit) == len && memcmp(s, lit, len) == 0;
}

/* Parses decimal digits s[0..len) into [min, max]; false when empty, not digits or out of
 * range. */
static bool parse_uint(const char *s, size_t len, long min, long max, long *out)
{
    long v = 0;
    if (len == 0 || len > 10)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > max)
        return false;
    *out = v;
    return true;
}

static bool host_char_ok(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '.' || ch == '_';
}

static int parse_redis(struct cmx_limits_config *c, const char *s, size_t len, char *err,
                       size_t cap)
{
    static const char scheme[] = "redis://";
    const char *p = s + sizeof(scheme) - 1, *end = s + len;
    const char *auth_end = NULL, *host, *host_end, *port = NULL, *port_end = NULL;
    char user[CMX_LIMITS_SECRET_MAX + 1] = "", pass[CMX_LIMITS_SECRET_MAX + 1] = "";
    long port_v = 6379, db_v = 0;

    for (const char *q = p; q < end && *q != '/'; q++)
        if (*q == '@')
            auth_end = q; /* the last '@' ends the credentials */
    if (auth_end != NULL) {
        const char *colon = memchr(p, ':', (size_t)(auth_end - p));
        if (colon == NULL)
            return fail(err, cap,
                        "limits: credentials in the Redis URL need the form "
                        "[user]:password@");
        size_t ul = (size_t)(colon - p), pl = (size_t)(auth_end - colon - 1);
        if (ul > CMX_LIMITS_SECRET_MAX || pl > CMX_LIMITS_SECRET_MAX)
            return fail(err, cap, "limits: Redis user or password too long");
        if (pl == 0)
            return fail(err, cap, "limits: empty Redis password");
        memcpy(user, p, ul);
        user[ul] = '\0';
        memcpy(pass, colon + 1, pl);
        pass[pl] = '\0';
        for (size_t i = 0; i < ul + pl + 1; i++)
            if ((unsigned char)p[i] < 0x21 || p[i] == 0x7f)
                return fail(err, cap,
                            "limits: control character or space in the Redis "
                            "credentials");
        p = auth_end + 1;
    }
    if (p < end && *p == '[') {
        host = p + 1;
        host_end = memchr(host, ']', (size_t)(end - host));
        if (host_end == NULL)
            return fail(err, cap, "limits: unterminated [IPv6] host in the Redis URL");
        for (const char *q = host; q < host_end; q++)
            if (!((*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'f') ||
                  (*q >= 'A' && *q <= 'F') || *q == ':' || *q == '.'))
                return fail(err, cap, "limits: bad IPv6 address in the Redis URL");
        p = host_end + 1;
    } else {
        host = p;
        while (p < end && host_char_ok(*p))
            p++;
        host_end = p;
    }
    if (host_end == host)
        return fail(err, cap, "limits: the Redis URL has no host (redis://host:port[/db])");
    if ((size_t)(host_end - host) > CMX_LIMITS_HOST_MAX)
        return fail(err, cap, "limits: Redis host name longer than %d bytes", CMX_LIMITS_HOST_MAX);
    if (p < end && *p == ':') {
        port = ++p;
        while (p < end && *p != '/')
            p++;
        port_end = p;
        if (!parse_uint(port, (size_t)(port_end - port), 1, 65535, &port_v))
            return fail(err, cap, "limits: Redis port must be a number from 1 to 65535");
    }
    if (p < end && *p == '/') {
        p++;
        if (p < end && !parse_uint(p, (size_t)(end - p), 0, 9999, &db_v))
            return fail(err, cap, "limits: Redis database must be a number from 0 to 9999");
        p = end;
    }
    if (p != end)
        return fail(err, cap,
                    "limits: unexpected character '%c' in the Redis URL "
                    "(redis://host:port[/db])",
                    (*p >= 0x21 && *p < 0x7f) ? *p : '?');
    c->backend = CMX_LIMITS_REDIS;
    memcpy(c->host, host, (size_t)(host_end - host));
    c->host[host_end - host] = '\0';
    c->port = (int)port_v;
    c->db = (int)db_v;
    memcpy(c->user, user, sizeof(user));
    memcpy(c->password, pass, sizeof(pass));
    memset(pass, 0, sizeof(pass));
    return 0;
}

int cmx_limits_config_parse(struct cmx_limits_config *c, const char *s, size_t len, char *err,
                            size_t errcap)
{
    if (err != NULL && errcap > 0)
        err[0] = '\0';
    if (s == NULL || len == 0)
        return fail(err, errcap, "limits: empty value (memory or redis://host:port[/db])");
    if (eq(s, len, "memory")) {
        c->backend = CMX_LIMITS_MEMORY;
        return 0;
    }
    if (len >= 8 && memcmp(s, "redis://", 8) == 0)
        return parse_redis(c, s, len, err, errcap);
    if (len >= 9 && memcmp(s, "rediss://", 9) == 0)
        return fail(err, errcap, "limits: TLS to Redis (rediss://) is not supported");
    if (len >= 15 && memcmp(s, "redis+sentinel:", 15) == 0)
        return fail(err, errcap, "limits: Redis Sentinel URLs are not supported");
    return fail(err, errcap, "limits: expected memory or redis://host:port[/db]");
}

int cmx_limits_config_parse_map(struct cmx_limits_config *c, const char *const *keys,
                                const char *const *vals, const size_t *vlens, size_t n, char *err,
                                size_t errcap)
{
    bool seen_url = false, seen_on_error = false, seen_timeout = false;
    struct cmx_limits_config tmp = *c;
    int rc;

    if (err != NULL && errcap > 0)
        err[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const char *k = keys[i], *v = vals[i];
        size_t vl = vlens[i];
        if (k == NULL || v == NULL)
            return fail(err, errcap, "limits: missing key or value");
        if (strcmp(k, "url") == 0) {
            if (seen_url)
                return fail(err, errcap, "limits: url given twice");
            seen_url = true;
            rc = cmx_limits_config_parse(&tmp, v, vl, err, errcap);
            if (rc != 0)
                return rc;
        } else if (strcmp(k, "on_error") == 0) {
            if (seen_on_error)
                return fail(err, errcap, "limits: on_error given twice");
            seen_on_error = true;
            if (eq(v, vl, "fail_open"))
                tmp.on_error = CMX_LIMITS_FAIL_OPEN;
            else if (eq(v, vl, "fail_closed"))
                tmp.on_error = CMX_LIMITS_FAIL_CLOSED;
            else
                return fail(err, errcap, "limits.on_error: expected fail_open or fail_closed");
        } else if (strcmp(k, "timeout_ms") == 0) {
            long t;
            if (seen_timeout)
                return fail(err, errcap, "limits: timeout_ms given twice");
            seen_timeout = true;
            if (!parse_uint(v, vl, 1, 60000, &t))
                return fail(err, errcap,
                            "limits.timeout_ms: expected a number of milliseconds, 1 to 60000");
            tmp.timeout_ms = (int)t;
        } else {
            return fail(err, errcap,
                        "limits: unknown key '%.40s' (expected url, on_error, "
                        "timeout_ms)",
                        k);
        }
    }
    if (!seen_url)
        return fail(err, errcap, "limits: the map form needs url (memory or redis://...)");
    *c = tmp;
    memset(&tmp, 0, sizeof(tmp));
    return 0;
}

size_t cmx_limits_config_describe(const struct cmx_limits_config *c, char *buf, size_t cap)
{
    const char *pol = c->on_error == CMX_LIMITS_FAIL_OPEN ? "fail_open" : "fail_closed";
    int n;
    if (cap == 0)
        return 0;
    if (c->backend == CMX_LIMITS_MEMORY)
        n = snprintf(buf, cap, "memory");
    else
        n = snprintf(buf, cap, "redis://%s%s%s:%d/%d (%s%s)", strchr(c->host, ':') ? "[" : "",
                     c->host, strchr(c->host, ':') ? "]" : "", c->port, c->db, pol,
                     c->password[0] ? ", auth" : "");
    if (n < 0)
        return 0;
    return (size_t)n >= cap ? cap - 1 : (size_t)n;
}
