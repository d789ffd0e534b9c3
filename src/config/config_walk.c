/* The loader's machinery, independent of any section: messages, the path used in them,
 * YAML parsing with captured diagnostics, ${VAR} expansion, scalar conversions and the
 * table-driven mapping walker (see config_int.h). */
#include "config/config_int.h"
#include "core/buf.h"
#include "core/decimal.h"
#include "core/err.h"

#include <assert.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- messages ---------------------------------------------------------------------- */

static void vmsg(struct cmx_config_ctx *ctx, int line, bool warning, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

static void vmsg(struct cmx_config_ctx *ctx, int line, bool warning, const char *fmt, va_list ap)
{
    char *text = NULL;

    if (!warning)
        ctx->errors++;
    if (vasprintf(&text, fmt, ap) < 0) {
        ctx->nomem = true;
        return;
    }
    if (ctx->n_msgs == ctx->cap_msgs) {
        size_t cap = ctx->cap_msgs ? ctx->cap_msgs * 2 : 16;
        struct cmx_config_msg *m = realloc(ctx->msgs, cap * sizeof(*m));
        if (m == NULL) {
            free(text);
            ctx->nomem = true;
            return;
        }
        ctx->msgs = m;
        ctx->cap_msgs = cap;
    }
    ctx->msgs[ctx->n_msgs] =
        (struct cmx_config_msg){.line = line, .seq = ctx->n_msgs, .warning = warning, .text = text};
    ctx->n_msgs++;
}

void cmx_config_error(struct cmx_config_ctx *ctx, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg(ctx, line, false, fmt, ap);
    va_end(ap);
}

void cmx_config_warn(struct cmx_config_ctx *ctx, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg(ctx, line, true, fmt, ap);
    va_end(ap);
}

static int msg_cmp(const void *a, const void *b)
{
    const struct cmx_config_msg *x = a, *y = b;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

void cmx_config_flush(struct cmx_config_ctx *ctx, struct cmx_config_diag *diag)
{
    if (ctx->n_msgs > 1)
        qsort(ctx->msgs, ctx->n_msgs, sizeof(ctx->msgs[0]), msg_cmp);
    for (size_t i = 0; i < ctx->n_msgs; i++) {
        struct cmx_config_msg *m = &ctx->msgs[i];
        if (diag != NULL) {
            const char *sev = m->warning ? "warning" : "error";
            if (m->line > 0)
                cmx_buf_printf(&diag->text, "%s:%d: %s: %s\n", ctx->name, m->line, sev, m->text);
            else
                cmx_buf_printf(&diag->text, "%s: %s: %s\n", ctx->name, sev, m->text);
            if (m->warning)
                diag->warnings++;
            else
                diag->errors++;
        }
        free(m->text);
    }
    free(ctx->msgs);
    ctx->msgs = NULL;
    ctx->n_msgs = ctx->cap_msgs = 0;
}

void cmx_config_quote(char *dst, size_t cap, const char *s, size_t len)
{
    size_t o = 0;
    size_t i = 0;

    for (; i < len && o + 6 < cap && i < CMX_CONFIG_QUOTE_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            dst[o++] = '\\';
        dst[o++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (i < len) {
        /* Do not leave half a UTF-8 sequence before the ellipsis. */
        while (o > 0 && ((unsigned char)dst[o - 1] & 0xc0) == 0x80)
            o--;
        if (o > 0 && ((unsigned char)dst[o - 1] & 0xc0) == 0xc0)
            o--;
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = '\0';
}

/* ---- path -------------------------------------------------------------------------- */

static size_t path_append(struct cmx_config_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static size_t path_append(struct cmx_config_ctx *ctx, const char *fmt, ...)
{
    size_t old = ctx->path_len;
    size_t room = sizeof(ctx->path) - old;
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(ctx->path + old, room, fmt, ap);
    va_end(ap);
    if (n < 0)
        ctx->path[old] = '\0';
    else
        ctx->path_len = (size_t)n < room ? old + (size_t)n : sizeof(ctx->path) - 1;
    return old;
}

size_t cmx_config_path_key(struct cmx_config_ctx *ctx, const char *seg)
{
    return path_append(ctx, ctx->path_len ? ".%s" : "%s", seg);
}

size_t cmx_config_path_index(struct cmx_config_ctx *ctx, size_t i)
{
    return path_append(ctx, "[%zu]", i);
}

void cmx_config_path_pop(struct cmx_config_ctx *ctx, size_t len)
{
    ctx->path_len = len;
    ctx->path[len] = '\0';
}

/* ---- nodes ------------------------------------------------------------------------- */

bool cmx_config_visit(struct cmx_config_ctx *ctx, int line)
{
    if (ctx->too_big)
        return false;
    if (++ctx->visits <= CMX_CONFIG_MAX_VISITS)
        return true;
    ctx->too_big = true;
    cmx_config_error(ctx, line, "configuration too large (more than %d nodes, aliases expanded)",
                     CMX_CONFIG_MAX_VISITS);
    return false;
}

struct fy_node *cmx_config_resolve(struct cmx_config_ctx *ctx, struct fy_node *n, int line,
                                   bool *bad)
{
    *bad = false;
    if (n == NULL || !fy_node_is_alias(n))
        return n;
    struct fy_node *target = fy_node_resolve_alias(n);
    if (target == NULL) {
        char q[CMX_CONFIG_QUOTE_MAX * 2 + 8];
        size_t len = 0;
        const char *name = fy_node_get_scalar(n, &len); /* an alias: its anchor name */
        cmx_config_quote(q, sizeof(q), name ? name : "", name ? len : 0);
        cmx_config_error(ctx, line, "undefined YAML alias \"*%s\"", q);
        *bad = true;
    }
    return target;
}

int cmx_config_node_line(struct fy_node *n, int fallback)
{
    if (n == NULL)
        return fallback;
    switch (fy_node_get_type(n)) {
    case FYNT_SCALAR: {
        struct fy_token *t = fy_node_get_scalar_token(n);
        const struct fy_mark *m = t ? fy_token_start_mark(t) : NULL;
        return m != NULL ? m->line + 1 : fallback;
    }
    case FYNT_MAPPING: {
        void *it = NULL;
        struct fy_node_pair *p = fy_node_mapping_iterate(n, &it);
        return p ? cmx_config_node_line(fy_node_pair_key(p), fallback) : fallback;
    }
    case FYNT_SEQUENCE: {
        void *it = NULL;
        return cmx_config_node_line(fy_node_sequence_iterate(n, &it), fallback);
    }
    }
    return fallback;
}

/* ---- ${VAR} expansion -------------------------------------------------------------- */

static bool var_start(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static bool var_char(char c)
{
    return var_start(c) || (c >= '0' && c <= '9');
}

/* Expands s into b. Every problem is reported (so all missing variables are listed);
 * returns -1 when there was one. */
static int expand(struct cmx_config_ctx *ctx, const char *s, size_t len, int line,
                  struct cmx_buf *b)
{
    int rc = 0;
    size_t i = 0;

    while (i < len) {
        const char *dollar = memchr(s + i, '$', len - i);
        size_t lit_end = dollar ? (size_t)(dollar - s) : len;
        if (cmx_buf_append(b, s + i, lit_end - i) != 0)
            goto too_long;
        i = lit_end;
        if (i == len)
            break;
        if (i + 2 < len && s[i + 1] == '$' && s[i + 2] == '{') { /* "$${" -> "${" */
            if (cmx_buf_append(b, "${", 2) != 0)
                goto too_long;
            i += 3;
            continue;
        }
        if (i + 1 >= len || s[i + 1] != '{') { /* a lone '$' is literal */
            if (cmx_buf_append(b, "$", 1) != 0)
                goto too_long;
            i++;
            continue;
        }
        const char *close = memchr(s + i + 2, '}', len - i - 2);
        if (close == NULL) {
            cmx_config_error(ctx, line, "unterminated \"${\" in %s (write \"$${\" for a literal)",
                             ctx->path);
            return -1;
        }
        size_t name_start = i + 2, end = (size_t)(close - s), j = name_start;
        if (j < end && var_start(s[j])) {
            while (j < end && var_char(s[j]))
                j++;
        }
        bool ok = j > name_start, has_default = false;
        if (ok && j < end) {
            if (end - j >= 2 && s[j] == ':' && s[j + 1] == '-')
                has_default = true;
            else
                ok = false;
        }
        if (!ok) {
            char q[CMX_CONFIG_QUOTE_MAX * 2 + 8];
            cmx_config_quote(q, sizeof(q), s + i, end + 1 - i);
            cmx_config_error(ctx, line,
                             "invalid variable reference \"%s\" in %s (expected ${NAME} or "
                             "${NAME:-default}; write \"$${\" for a literal)",
                             q, ctx->path);
            rc = -1;
            i = end + 1;
            continue;
        }
        size_t name_len = j - name_start;
        char name[256];
        if (name_len >= sizeof(name)) {
            cmx_config_error(ctx, line, "variable name too long in %s", ctx->path);
            rc = -1;
            i = end + 1;
            continue;
        }
        memcpy(name, s + name_start, name_len);
        name[name_len] = '\0';
        const char *val = getenv(name);
        if (has_default && (val == NULL || val[0] == '\0')) {
            const char *def = s + j + 2;
            if (cmx_buf_append(b, def, end - (j + 2)) != 0)
                goto too_long;
        } else if (val == NULL) {
            cmx_config_error(ctx, line, "environment variable %s is not set (%s)", name, ctx->path);
            rc = -1;
        } else if (cmx_buf_puts(b, val) != 0) {
            goto too_long;
        }
        i = end + 1;
    }
    return rc;

too_long:
    cmx_config_error(ctx, line, "%s is too long after expansion (more than %u bytes)", ctx->path,
                     CMX_CONFIG_MAX_VALUE);
    return -1;
}

/* Decodes the body of a single-quoted scalar (s, n: the text between the quotes): "''"
 * is a quote, and line breaks fold as YAML says (spaces around them trimmed, one break
 * gives a space, k > 1 breaks give k - 1 newlines). The result is never longer than n. */
static size_t sq_decode(const char *s, size_t n, char *out)
{
    size_t o = 0, i = 0;

    while (i < n) {
        char c = s[i];
        if (c == '\'' && i + 1 < n && s[i + 1] == '\'') {
            out[o++] = '\'';
            i += 2;
        } else if (c == '\r' || c == '\n') {
            size_t breaks = 0;
            while (o > 0 && (out[o - 1] == ' ' || out[o - 1] == '\t'))
                o--;
            for (; i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'); i++) {
                if (s[i] == '\n' || (s[i] == '\r' && (i + 1 >= n || s[i + 1] != '\n')))
                    breaks++;
            }
            if (breaks == 1)
                out[o++] = ' ';
            for (size_t k = 1; k < breaks; k++)
                out[o++] = '\n';
        } else {
            out[o++] = c;
            i++;
        }
    }
    return o;
}

const char *cmx_config_scalar(struct cmx_config_ctx *ctx, struct fy_node *n, size_t *len)
{
    *len = 0;
    if (n == NULL || fy_node_get_type(n) != FYNT_SCALAR)
        return NULL;
    if (fy_node_get_style(n) != FYNS_SINGLE_QUOTED)
        return fy_node_get_scalar(n, len);

    /* libfyaml 0.7.12 leaks the text of single-quoted scalars with five or more ''
     * escapes (found by fuzz/fuzz_config.c), so these are decoded here from the input. */
    struct fy_token *t = fy_node_get_scalar_token(n);
    const struct fy_mark *sm = t ? fy_token_start_mark(t) : NULL;
    const struct fy_mark *em = t ? fy_token_end_mark(t) : NULL;
    if (sm == NULL || em == NULL || sm->input_pos > em->input_pos || em->input_pos > ctx->input_len)
        return "";
    size_t n_raw = em->input_pos - sm->input_pos;
    char *out = cmx_arena_alloc(ctx->arena, n_raw + 1);
    if (out == NULL) {
        ctx->nomem = true;
        return "";
    }
    *len = sq_decode(ctx->input + sm->input_pos, n_raw, out);
    out[*len] = '\0';
    return out;
}

bool cmx_config_is_null(struct fy_node *n)
{
    static const char *const nulls[] = {"~", "null", "Null", "NULL"};
    size_t len = 0;
    const char *t;

    if (n == NULL)
        return true;
    if (fy_node_get_type(n) != FYNT_SCALAR || fy_node_get_style(n) != FYNS_PLAIN)
        return false;
    t = fy_node_get_scalar(n, &len);
    if (t == NULL || len == 0)
        return true;
    for (size_t i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++) {
        if (len == strlen(nulls[i]) && memcmp(t, nulls[i], len) == 0)
            return true;
    }
    return false;
}

static const char *kind_name(enum fy_node_type t)
{
    return t == FYNT_MAPPING ? "a mapping" : t == FYNT_SEQUENCE ? "a sequence" : "a scalar";
}

int cmx_config_text(struct cmx_config_ctx *ctx, struct fy_node *n, int line, const char **text,
                    size_t *len)
{
    bool bad;
    const char *raw = NULL;
    size_t raw_len = 0;
    char *res;

    n = cmx_config_resolve(ctx, n, line, &bad);
    if (bad)
        return -1;
    if (n != NULL) {
        if (fy_node_get_type(n) != FYNT_SCALAR) {
            cmx_config_error(ctx, line, "%s must be a single value, not %s", ctx->path,
                             kind_name(fy_node_get_type(n)));
            return -1;
        }
        raw = cmx_config_scalar(ctx, n, &raw_len);
    }
    if (raw == NULL) {
        raw = "";
        raw_len = 0;
    }
    if (memchr(raw, '\0', raw_len) != NULL) {
        cmx_config_error(ctx, line, "%s contains a NUL character", ctx->path);
        return -1;
    }
    if (memchr(raw, '$', raw_len) == NULL) {
        res = cmx_arena_strndup(ctx->arena, raw, raw_len);
        if (res == NULL)
            goto nomem;
        *text = res;
        *len = raw_len;
        return 0;
    }

    struct cmx_buf b;
    cmx_buf_init(&b, CMX_CONFIG_MAX_VALUE);
    int rc = expand(ctx, raw, raw_len, line, &b);
    if (rc == 0) {
        res = cmx_arena_strndup(ctx->arena, b.data ? b.data : "", b.len);
        if (res == NULL) {
            cmx_buf_free(&b);
            goto nomem;
        }
        *text = res;
        *len = b.len;
    }
    cmx_buf_free(&b);
    return rc;

nomem:
    ctx->nomem = true;
    return -1;
}

void cmx_config_bad_value(struct cmx_config_ctx *ctx, struct fy_node *n, int line, unsigned flags,
                          const char *msg)
{
    const char *raw = NULL;
    size_t raw_len = 0;
    char q[CMX_CONFIG_QUOTE_MAX * 2 + 8];
    bool bad;

    n = cmx_config_resolve(ctx, n, line, &bad);
    if (n != NULL && fy_node_get_type(n) == FYNT_SCALAR)
        raw = cmx_config_scalar(ctx, n, &raw_len);
    if ((flags & CMX_CONFIG_SECRET) || raw == NULL) {
        cmx_config_error(ctx, line, "%s %s", ctx->path, msg);
        return;
    }
    cmx_config_quote(q, sizeof(q), raw, raw_len);
    cmx_config_error(ctx, line, "%s %s, got \"%s\"", ctx->path, msg, q);
}

/* ---- scalar conversions ------------------------------------------------------------ */

/* Strict decimal integer: ['-'] DIGIT+, no spaces, no '+', no overflow. */
static bool parse_i64(const char *s, size_t len, int64_t *out)
{
    if (len == 0)
        return false;
    /* The decimal parser at scale 0 has exactly this grammar minus the fraction. */
    if (memchr(s, '.', len) != NULL)
        return false;
    return cmx_decimal_parse(s, len, 0, out) == 0;
}

/* "10485760", "512KiB", "10 MiB", "1MB", "64k": SI suffixes (kB, MB, GB) are powers of
 * 1000, binary ones (KiB, MiB, GiB) and the bare letters (k, K, M, G, as nginx) of 1024.
 * A trailing "B" alone means bytes. Case-insensitive. */
static bool parse_size(const char *s, size_t len, int64_t *out)
{
    static const struct {
        const char *suffix;
        int64_t mult;
    } units[] = {
        {"", 1},
        {"b", 1},
        {"k", 1024},
        {"kb", 1000},
        {"kib", 1024},
        {"m", 1024 * 1024},
        {"mb", 1000 * 1000},
        {"mib", 1024 * 1024},
        {"g", 1024 * 1024 * 1024},
        {"gb", 1000 * 1000 * 1000},
        {"gib", 1024 * 1024 * 1024},
    };
    size_t i = 0;
    int64_t v = 0;

    while (i < len && s[i] >= '0' && s[i] <= '9') {
        int d = s[i] - '0';
        if (v > (INT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
        i++;
    }
    if (i == 0)
        return false;
    while (i < len && s[i] == ' ')
        i++;
    size_t slen = len - i;
    for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
        if (strlen(units[u].suffix) != slen || strncasecmp(s + i, units[u].suffix, slen) != 0)
            continue;
        if (v > INT64_MAX / units[u].mult)
            return false;
        *out = v * units[u].mult;
        return true;
    }
    return false;
}

static bool parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

static void range_text(char *dst, size_t cap, const char *what, int64_t min, int64_t max,
                       int64_t unbounded)
{
    if (max >= unbounded)
        snprintf(dst, cap, "must be %s >= %" PRId64, what, min);
    else
        snprintf(dst, cap, "must be %s between %" PRId64 " and %" PRId64, what, min, max);
}

/* Micro-units as short decimal text: "0" rather than "0.000000". */
static void trimmed_decimal(int64_t v, char m[32])
{
    size_t n = cmx_decimal_format(v, 6, m, 32);
    while (n > 0 && m[n - 1] == '0')
        m[--n] = '\0';
    if (n > 0 && m[n - 1] == '.')
        m[--n] = '\0';
}

static void micros_range_text(char *dst, size_t cap, int64_t min, int64_t max)
{
    char lo[32], hi[32];
    trimmed_decimal(min, lo);
    trimmed_decimal(max, hi);
    if (max == INT64_MAX)
        snprintf(dst, cap, "must be a decimal number >= %s with at most 6 fraction digits", lo);
    else
        snprintf(dst, cap,
                 "must be a decimal number between %s and %s with at most 6 fraction digits", lo,
                 hi);
}

/* ---- the walker -------------------------------------------------------------------- */

static int store(struct cmx_config_ctx *ctx, const struct cmx_config_key *k, struct fy_node *val,
                 int line, const char *where, void *obj)
{
    char *field = (char *)obj + k->off;
    const char *text;
    size_t len;
    char msg[160];
    int64_t v;
    bool bad;

    switch (k->kind) {
    case CMX_CONFIG_MAP: {
        char sub_where[CMX_CONFIG_PATH_MAX + 64];
        if (where == NULL)
            snprintf(sub_where, sizeof(sub_where), "\"%s\"", k->name);
        else
            snprintf(sub_where, sizeof(sub_where), "\"%s\" of %s", k->name, where);
        cmx_config_walk(ctx, val, line, sub_where, k->sub, obj, NULL);
        return 0;
    }
    case CMX_CONFIG_FN:
        return k->fn(ctx, val, line, where, obj);
    default:
        break;
    }

    if (k->kind == CMX_CONFIG_STR) {
        struct fy_node *r = cmx_config_resolve(ctx, val, line, &bad);
        if (bad)
            return -1;
        if (cmx_config_is_null(r)) {
            if (k->flags & CMX_CONFIG_REQUIRED) {
                cmx_config_error(ctx, line, "%s must not be empty", ctx->path);
                return -1;
            }
            *(const char **)(void *)field = NULL;
            return 0;
        }
    }
    if (cmx_config_text(ctx, val, line, &text, &len) != 0)
        return -1;
    switch (k->kind) {
    case CMX_CONFIG_STR:
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)text[i];
            if (c < 0x20 || c == 0x7f) {
                cmx_config_bad_value(ctx, val, line, k->flags,
                                     "must not contain control characters or line breaks");
                return -1;
            }
        }
        if (len == 0 && (k->flags & CMX_CONFIG_REQUIRED)) {
            cmx_config_error(ctx, line, "%s must not be empty", ctx->path);
            return -1;
        }
        *(const char **)(void *)field = len ? text : NULL;
        return 0;
    case CMX_CONFIG_INT:
        if (!parse_i64(text, len, &v) || v < k->min || v > k->max) {
            range_text(msg, sizeof(msg), "an integer", k->min, k->max, INT_MAX);
            cmx_config_bad_value(ctx, val, line, k->flags, msg);
            return -1;
        }
        *(int *)(void *)field = (int)v;
        return 0;
    case CMX_CONFIG_SIZE:
        if (!parse_size(text, len, &v) || v < k->min || v > k->max) {
            range_text(msg, sizeof(msg), "a size in bytes (e.g. 65536, 512KiB, 10MiB)", k->min,
                       k->max, INT64_MAX);
            cmx_config_bad_value(ctx, val, line, k->flags, msg);
            return -1;
        }
        *(size_t *)(void *)field = (size_t)v;
        return 0;
    case CMX_CONFIG_BOOL: {
        bool b;
        if (!parse_bool(text, &b)) {
            cmx_config_bad_value(ctx, val, line, k->flags, "must be true or false");
            return -1;
        }
        *(bool *)(void *)field = b;
        return 0;
    }
    case CMX_CONFIG_MICROS:
        if (cmx_decimal_parse(text, len, 6, &v) != 0 || v < k->min || v > k->max) {
            micros_range_text(msg, sizeof(msg), k->min, k->max);
            cmx_config_bad_value(ctx, val, line, k->flags, msg);
            return -1;
        }
        *(int64_t *)(void *)field = v;
        return 0;
    case CMX_CONFIG_SECS_MS:
        if (cmx_decimal_parse(text, len, 3, &v) != 0 || v < k->min || v > k->max) {
            snprintf(msg, sizeof(msg),
                     "must be a number of seconds (decimals allowed, to the millisecond) from "
                     "%lld.%03lld to %lld.%03lld",
                     (long long)(k->min / 1000), (long long)(k->min % 1000),
                     (long long)(k->max / 1000), (long long)(k->max % 1000));
            cmx_config_bad_value(ctx, val, line, k->flags, msg);
            return -1;
        }
        *(int *)(void *)field = (int)v;
        return 0;
    case CMX_CONFIG_ENUM: {
        struct cmx_buf list;
        for (size_t i = 0; k->choices[i] != NULL; i++) {
            if (strcmp(text, k->choices[i]) == 0) {
                *(const char **)(void *)field = k->choices[i];
                return 0;
            }
        }
        cmx_buf_init(&list, 512);
        for (size_t i = 0; k->choices[i] != NULL; i++)
            cmx_buf_printf(&list, "%s%s", i ? ", " : "", k->choices[i]);
        snprintf(msg, sizeof(msg), "must be one of: %s", list.data ? list.data : "");
        cmx_buf_free(&list);
        cmx_config_bad_value(ctx, val, line, k->flags, msg);
        return -1;
    }
    default:
        assert(!"unhandled config kind");
        return -1;
    }
}

size_t cmx_config_key_index(const struct cmx_config_key *keys, const char *name)
{
    size_t i;
    for (i = 0; keys[i].name != NULL; i++) {
        if (strcmp(keys[i].name, name) == 0)
            return i;
    }
    assert(!"config key not in table");
    return i;
}

/* Optimal string alignment distance (Levenshtein plus adjacent transpositions), giving up
 * above 3 because only distances up to 2 matter. */
static size_t edit_distance(const char *a, size_t la, const char *b, size_t lb)
{
    size_t d[3][33];

    if (la > 32 || lb > 32)
        return 99;
    if ((la > lb ? la - lb : lb - la) > 2)
        return 99;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t *cur = d[i % 3], *prev = d[(i - 1) % 3], *prev2 = d[(i + 1) % 3];
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = prev[j] + 1;
            if (cur[j - 1] + 1 < best)
                best = cur[j - 1] + 1;
            if (prev[j - 1] + cost < best)
                best = prev[j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                prev2[j - 2] + 1 < best)
                best = prev2[j - 2] + 1;
            cur[j] = best;
        }
    }
    return d[la % 3][lb];
}

const char *cmx_config_suggest(const char *s, size_t len, const char *const *candidates, size_t n)
{
    const char *best = NULL;
    size_t best_d = 3;

    for (size_t i = 0; i < n; i++) {
        if (candidates[i] == NULL)
            continue;
        size_t clen = strlen(candidates[i]);
        size_t d = edit_distance(s, len, candidates[i], clen);
        /* 2 edits turn "zz" into "p": only suggest when most of the word survives. */
        if (d < best_d && d * 2 <= clen) {
            best_d = d;
            best = candidates[i];
        }
    }
    return best;
}

void cmx_config_walk(struct cmx_config_ctx *ctx, struct fy_node *n, int line, const char *where,
                     const struct cmx_config_key *keys, void *obj, struct cmx_config_seen *seen)
{
    struct cmx_config_seen local;
    struct fy_node *vals[CMX_CONFIG_MAX_KEYS];
    const char *names[CMX_CONFIG_MAX_KEYS];
    char in_where[CMX_CONFIG_PATH_MAX + 80];
    size_t nkeys = 0;
    bool bad;

    if (seen == NULL)
        seen = &local;
    memset(seen, 0, sizeof(*seen));
    while (keys[nkeys].name != NULL) {
        names[nkeys] = keys[nkeys].name;
        nkeys++;
        assert(nkeys < CMX_CONFIG_MAX_KEYS);
    }
    if (where == NULL)
        snprintf(in_where, sizeof(in_where), "at the top level");
    else
        snprintf(in_where, sizeof(in_where), "in %s", where);

    n = cmx_config_resolve(ctx, n, line, &bad);
    if (bad || !cmx_config_visit(ctx, line))
        return;
    if (n != NULL && fy_node_get_type(n) == FYNT_SCALAR) {
        /* "server:" with nothing under it (a null) reads as an empty mapping. */
        if (!cmx_config_is_null(n)) {
            if (ctx->path_len)
                cmx_config_error(ctx, line, "%s must be a mapping of keys to values", ctx->path);
            else
                cmx_config_error(ctx, line,
                                 "the configuration must be a mapping of keys to values");
            return;
        }
        n = NULL;
    } else if (n != NULL && fy_node_get_type(n) != FYNT_MAPPING) {
        if (ctx->path_len)
            cmx_config_error(ctx, line, "%s must be a mapping of keys to values, not a sequence",
                             ctx->path);
        else
            cmx_config_error(ctx, line, "the configuration must be a mapping, not a sequence");
        return;
    }

    void *it = NULL;
    struct fy_node_pair *pair;
    while (n != NULL && (pair = fy_node_mapping_iterate(n, &it)) != NULL) {
        struct fy_node *key = fy_node_pair_key(pair);
        int kline = cmx_config_node_line(key, line);
        size_t klen = 0;
        const char *ktext = NULL;
        char q[CMX_CONFIG_QUOTE_MAX * 2 + 8];

        if (!cmx_config_visit(ctx, kline))
            return;
        key = cmx_config_resolve(ctx, key, kline, &bad);
        if (bad)
            continue;
        if (key != NULL && fy_node_get_type(key) == FYNT_SCALAR)
            ktext = cmx_config_scalar(ctx, key, &klen);
        if (ktext == NULL) {
            cmx_config_error(ctx, kline, "keys must be plain words, not %s (%s)",
                             key ? kind_name(fy_node_get_type(key)) : "null", in_where);
            continue;
        }
        size_t idx = 0;
        while (idx < nkeys && (strlen(names[idx]) != klen || memcmp(names[idx], ktext, klen) != 0))
            idx++;
        cmx_config_quote(q, sizeof(q), ktext, klen);
        if (idx == nkeys) {
            const char *hint = cmx_config_suggest(ktext, klen, names, nkeys);
            if (hint != NULL)
                cmx_config_error(ctx, kline, "unknown key \"%s\" %s (did you mean \"%s\"?)", q,
                                 in_where, hint);
            else
                cmx_config_error(ctx, kline, "unknown key \"%s\" %s", q, in_where);
            continue;
        }
        if (seen->present & ((uint64_t)1 << idx)) {
            cmx_config_error(ctx, kline, "duplicate key \"%s\" %s (first given at line %d)", q,
                             in_where, seen->lines[idx]);
            continue;
        }
        seen->present |= (uint64_t)1 << idx;
        vals[idx] = fy_node_pair_value(pair);
        seen->lines[idx] = kline;
    }

    for (size_t i = 0; i < nkeys; i++) {
        if (!(seen->present & ((uint64_t)1 << i))) {
            if (keys[i].flags & CMX_CONFIG_REQUIRED)
                cmx_config_error(ctx, line, "missing required key \"%s\" %s", keys[i].name,
                                 in_where);
            continue;
        }
        size_t mark = cmx_config_path_key(ctx, keys[i].name);
        int errors = ctx->errors;
        store(ctx, &keys[i], vals[i], seen->lines[i], where, obj);
        if (ctx->errors != errors)
            seen->failed |= (uint64_t)1 << i;
        cmx_config_path_pop(ctx, mark);
    }
}

/* ---- YAML -------------------------------------------------------------------------- */

/* libfyaml prints some failures through the diag output rather than collecting them; keep
 * the first such line so that it can be reported instead of reaching stderr. */
static void fy_output_cb(struct fy_diag *diag, void *user, const char *buf, size_t len)
{
    char *first = user;
    (void)diag;
    if (first[0] != '\0')
        return;
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
        len--;
    if (len > CMX_CONFIG_YAML_OUTPUT - 1)
        len = CMX_CONFIG_YAML_OUTPUT - 1;
    memcpy(first, buf, len);
    first[len] = '\0';
}

/* Length of the valid UTF-8 sequence at s (strict: no overlongs, surrogates or code
 * points above U+10FFFF), 0 when invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

/* The config must be UTF-8 text without control characters other than CR and LF, and
 * with tabs only on comment lines. Checked before libfyaml sees it: besides giving a clear
 * message, this keeps away inputs that crash Debian's libfyaml 0.7.12:
 *   - invalid UTF-8 in a directive loops for ever ("%\"\xa6": pantoniou/libfyaml#101,
 *     fixed after 0.7.12) or reads out of bounds (#175);
 *   - a tab before a block sequence in an explicit key ("? e:\t-") is a NULL write in
 *     fy_parser_destroy (found by fuzz/fuzz_config.c).
 * YAML forbids tabs for indentation anyway; inside values write \t in double quotes. */
static bool check_text(struct cmx_config_ctx *ctx, const char *yaml, size_t len)
{
    const unsigned char *s = (const unsigned char *)yaml;
    int line = 1;
    size_t col = 1, i = 0;
    bool comment_line = false, line_start = true;

    if (len >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0)
        i = 3; /* a UTF-8 byte order mark */
    while (i < len) {
        unsigned char c = s[i];
        size_t n = utf8_len(s + i, len - i);
        if (line_start && c != ' ' && c != '\t') {
            /* A line whose first non-blank is '#' is a comment (or text inside a quoted
             * scalar, where a tab is harmless content). */
            comment_line = c == '#';
            line_start = false;
        }
        if (c == '\t' && !comment_line) {
            cmx_config_error(ctx, line,
                             "tab character at column %zu: indent and separate with spaces "
                             "(write \\t inside double quotes for a tab in a value)",
                             col);
            return false;
        }
        if (n == 0) {
            cmx_config_error(ctx, line,
                             "invalid UTF-8 (byte 0x%02x at column %zu); the "
                             "configuration must be UTF-8 text",
                             c, col);
            return false;
        }
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
            cmx_config_error(ctx, line, "control character 0x%02x at column %zu", c, col);
            return false;
        }
        if (c == 0x7f) {
            cmx_config_error(ctx, line, "control character 0x7f at column %zu", col);
            return false;
        }
        if (c == '\n') {
            line++;
            col = 0;
            line_start = true;
            comment_line = false;
        }
        i += n;
        col++;
    }
    return true;
}

struct fy_document *cmx_config_yaml_parse(struct cmx_config_ctx *ctx, const char *yaml, size_t len,
                                          struct fy_parser **parser, struct fy_diag **fydiag)
{
    struct fy_diag_cfg dcfg;
    struct fy_document *doc = NULL, *extra = NULL;
    int errors_before = ctx->errors;

    *parser = NULL;
    *fydiag = NULL;
    ctx->input = yaml;
    ctx->input_len = len;
    if (!check_text(ctx, yaml, len))
        return NULL;
    char *first_output = ctx->yaml_output;

    first_output[0] = '\0';
    fy_diag_cfg_default(&dcfg);
    dcfg.fp = NULL;
    dcfg.output_fn = fy_output_cb;
    dcfg.user = first_output;
    dcfg.colorize = false;
    *fydiag = fy_diag_create(&dcfg);
    if (*fydiag == NULL)
        goto nomem;
    fy_diag_set_collect_errors(*fydiag, true);

    /* Duplicate keys are allowed by the parser so that the walker can report them with the
     * key's name and both lines. */
    struct fy_parse_cfg pcfg = {
        .flags = FYPCF_QUIET | FYPCF_ALLOW_DUPLICATE_KEYS,
        .diag = *fydiag,
    };
    *parser = fy_parser_create(&pcfg);
    if (*parser == NULL)
        goto nomem;
    if (fy_parser_set_string(*parser, yaml, len) != 0)
        goto nomem;
    doc = fy_parse_load_document(*parser);
    if (doc != NULL) {
        extra = fy_parse_load_document(*parser);
        if (extra != NULL) {
            int l = cmx_config_node_line(fy_document_root(extra), 0);
            cmx_config_error(ctx, l > 0 ? l : 1,
                             "a second YAML document (after \"---\"); only one is allowed");
            fy_parse_document_destroy(*parser, extra);
        }
    }

    void *it = NULL;
    struct fy_diag_error *e;
    while ((e = fy_diag_errors_iterate(*fydiag, &it)) != NULL) {
        if (e->type < FYET_ERROR)
            continue;
        cmx_config_error(ctx, e->line > 0 ? e->line : 1, "YAML syntax error: %s",
                         e->msg ? e->msg : "unknown");
    }
    if (doc == NULL && ctx->errors == errors_before) {
        if (first_output[0] != '\0')
            cmx_config_error(ctx, 1, "YAML error: %s", first_output);
        else
            cmx_config_error(ctx, 1, "the configuration is empty");
    }
    if (doc != NULL && ctx->errors != errors_before) {
        fy_parse_document_destroy(*parser, doc);
        doc = NULL;
    }
    return doc;

nomem:
    ctx->nomem = true;
    cmx_config_error(ctx, 1, "out of memory while parsing YAML");
    return NULL;
}

void cmx_config_yaml_free(struct fy_parser *parser, struct fy_diag *fydiag, struct fy_document *doc)
{
    if (doc != NULL)
        fy_parse_document_destroy(parser, doc);
    if (parser != NULL)
        fy_parser_destroy(parser);
    if (fydiag != NULL)
        fy_diag_destroy(fydiag);
}

int cmx_config_seq(struct cmx_config_ctx *ctx, struct fy_node *val, int line, const char *what,
                   struct fy_node **seq, size_t *count)
{
    bool bad;

    *seq = NULL;
    *count = 0;
    val = cmx_config_resolve(ctx, val, line, &bad);
    if (bad)
        return -1;
    if (cmx_config_is_null(val))
        return 0;
    if (fy_node_get_type(val) != FYNT_SEQUENCE) {
        cmx_config_error(ctx, line, "%s must be a list of %s (each item starting with \"- \")",
                         ctx->path, what);
        return -1;
    }
    *seq = val;
    *count = (size_t)fy_node_sequence_item_count(val);
    return 0;
}

int cmx_config_strings(struct cmx_config_ctx *ctx, struct fy_node *val, int line, const char *what,
                       const char ***out, size_t *n)
{
    struct fy_node *seq, *item, *r;
    size_t count, i = 0;
    void *it = NULL;
    bool bad;
    const char *text;
    size_t len;

    *out = NULL;
    *n = 0;
    r = cmx_config_resolve(ctx, val, line, &bad);
    if (bad)
        return -1;
    if (r != NULL && fy_node_get_type(r) == FYNT_SCALAR && !cmx_config_is_null(r)) {
        if (cmx_config_text(ctx, r, line, &text, &len) != 0)
            return -1;
        if (len == 0) {
            cmx_config_error(ctx, line, "%s must not be empty", ctx->path);
            return -1;
        }
        *out = cmx_arena_calloc(ctx->arena, sizeof(**out));
        if (*out == NULL) {
            ctx->nomem = true;
            return -1;
        }
        (*out)[0] = text;
        *n = 1;
        return 0;
    }
    if (cmx_config_seq(ctx, r, line, what, &seq, &count) != 0)
        return -1;
    if (count == 0)
        return 0;
    *out = cmx_arena_calloc(ctx->arena, count * sizeof(**out));
    if (*out == NULL) {
        ctx->nomem = true;
        return -1;
    }
    while (i < count && (item = fy_node_sequence_iterate(seq, &it)) != NULL) {
        int iline = cmx_config_node_line(item, line);
        size_t mark = cmx_config_path_index(ctx, i++);
        if (!cmx_config_visit(ctx, iline)) {
            cmx_config_path_pop(ctx, mark);
            return -1;
        }
        if (cmx_config_text(ctx, item, iline, &text, &len) == 0) {
            if (len == 0)
                cmx_config_error(ctx, iline, "%s must not be empty", ctx->path);
            else
                (*out)[(*n)++] = text;
        }
        cmx_config_path_pop(ctx, mark);
    }
    return 0;
}
