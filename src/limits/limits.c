/* The limiter front: validation, the GCRA arithmetic both backends share, results,
 * counters, metrics and OpenAI's rate-limit headers. Backends only store levels. */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "limits/limits.h"

struct cmx_limits {
    const struct cmx_limits_ops *ops;   /* the backend */
    struct cmx_limits_config cfg;       /* copy of the config */
    void *impl;                         /* backend-private state */
    atomic_bool up;                     /* reachable as last seen */
    uv_mutex_t mu;                      /* guards clients and retired */
    struct cmx_limits_client *clients;  /* open clients */
    struct cmx_limits_counters retired; /* counters of closed clients */
};

/* ---- GCRA ---- */

static int64_t gcd64(int64_t a, int64_t b)
{
    while (b != 0) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static int64_t ceil_div(int64_t a, int64_t b)
{
    return a <= 0 ? 0 : (a - 1) / b + 1;
}

int cmx_limits_gcra_params(struct cmx_limits_item *it)
{
    int64_t cap;
    if (it->unit == CMX_LIMITS_QUOTA) { /* a budget: no refill, level in the units */
        if (it->limit < 1 || it->limit > CMX_LIMITS_MAX_CAPACITY || it->ttl_us < 1 || it->init < 0)
            return CMX_EINVAL;
        it->unit_level = 1;
        it->rate = 0;
        it->capacity = it->limit;
        it->period_us = 0;
        it->id_limit = 0;
        if (it->init > CMX_LIMITS_MAX_LEVEL)
            it->init = CMX_LIMITS_MAX_LEVEL;
        return 0;
    }
    it->id_limit = it->limit;
    it->init = 0;
    it->ttl_us = 0;
    if (it->limit < 1 || it->period_us < 1)
        return CMX_EINVAL;
    int64_t g = gcd64(it->limit, it->period_us);
    it->unit_level = it->period_us / g;
    it->rate = it->limit / g;
    if (__builtin_mul_overflow(it->limit, it->unit_level, &cap) || cap > CMX_LIMITS_MAX_CAPACITY)
        return CMX_EINVAL;
    it->capacity = cap;
    return 0;
}

int64_t cmx_limits_gcra_drain(const struct cmx_limits_item *it, int64_t level, int64_t elapsed_us)
{
    if (elapsed_us <= 0 || level <= 0 || it->rate == 0)
        return level < 0 ? 0 : level;
    /* level / rate bounds the useful elapsed time, so the product cannot overflow */
    if (elapsed_us >= ceil_div(level, it->rate))
        return 0;
    return level - elapsed_us * it->rate;
}

bool cmx_limits_gcra_fits(const struct cmx_limits_item *it, int64_t level, int64_t cost)
{
    if (cost > it->limit)
        return false;
    return level + cost * it->unit_level <= it->capacity;
}

int64_t cmx_limits_gcra_add(const struct cmx_limits_item *it, int64_t level, int64_t delta)
{
    int64_t d, r;
    if (__builtin_mul_overflow(delta, it->unit_level, &d))
        return delta < 0 ? 0 : CMX_LIMITS_MAX_LEVEL;
    if (__builtin_add_overflow(level, d, &r))
        return d < 0 ? 0 : CMX_LIMITS_MAX_LEVEL;
    if (r < 0)
        return 0;
    return r > CMX_LIMITS_MAX_LEVEL ? CMX_LIMITS_MAX_LEVEL : r;
}

int64_t cmx_limits_gcra_reset_us(const struct cmx_limits_item *it, int64_t level)
{
    if (it->rate == 0)
        return it->ttl_us; /* a quota is back to empty only when its bucket is dropped */
    return ceil_div(level, it->rate);
}

void cmx_limits_gcra_state(const struct cmx_limits_item *it, int64_t level, int64_t cost,
                           struct cmx_limits_state *st)
{
    st->unit = it->unit;
    st->limit = it->limit;
    st->remaining = level >= it->capacity ? 0 : (it->capacity - level) / it->unit_level;
    st->reset_us = cmx_limits_gcra_reset_us(it, level);
    st->allowed = cmx_limits_gcra_fits(it, level, cost);
    if (st->allowed)
        st->retry_after_us = 0;
    else if (cost > it->limit || it->rate == 0)
        st->retry_after_us = -1; /* too large, or a quota: waiting does not help */
    else
        st->retry_after_us = ceil_div(level + cost * it->unit_level - it->capacity, it->rate);
}

/* ---- limiter and clients ---- */

void cmx_limits_config_init(struct cmx_limits_config *c)
{
    memset(c, 0, sizeof(*c));
    c->backend = CMX_LIMITS_MEMORY;
    c->on_error = CMX_LIMITS_FAIL_OPEN;
    c->port = 6379;
    c->timeout_ms = 500;
    c->backoff_min_ms = 50;
    c->backoff_max_ms = 2000;
    c->max_entries = (size_t)1 << 20;
    memcpy(c->key_prefix, "cmx:rl:", sizeof("cmx:rl:"));
}

int cmx_limits_new(const struct cmx_limits_config *cfg, struct cmx_limits **out)
{
    struct cmx_limits *l;
    int rc;

    *out = NULL;
    if (cfg->timeout_ms < 1 || cfg->backoff_min_ms < 1 || cfg->backoff_max_ms < cfg->backoff_min_ms)
        return CMX_EINVAL;
    l = calloc(1, sizeof(*l));
    if (l == NULL)
        return CMX_ENOMEM;
    l->cfg = *cfg;
    l->ops = cfg->backend == CMX_LIMITS_REDIS ? &cmx_limits_redis_ops : &cmx_limits_memory_ops;
    atomic_init(&l->up, cfg->backend == CMX_LIMITS_MEMORY);
    if (uv_mutex_init(&l->mu) != 0) {
        free(l);
        return CMX_ENOMEM;
    }
    rc = l->ops->init(l);
    if (rc != 0) {
        uv_mutex_destroy(&l->mu);
        free(l);
        return rc;
    }
    *out = l;
    return 0;
}

void cmx_limits_free(struct cmx_limits *l)
{
    if (l == NULL)
        return;
    l->ops->fini(l);
    uv_mutex_destroy(&l->mu);
    /* the copy may hold the Redis password */
    memset(&l->cfg, 0, sizeof(l->cfg));
    free(l);
}

int cmx_limits_client_new(struct cmx_limits *l, uv_loop_t *loop, struct cmx_limits_client **out)
{
    *out = NULL;
    return l->ops->client_new(l, loop, out);
}

void cmx_limits_client_close(struct cmx_limits_client *c)
{
    if (c != NULL)
        c->l->ops->client_close(c);
}

void cmx_limits_client_register(struct cmx_limits_client *c)
{
    struct cmx_limits *l = c->l;
    uv_mutex_lock(&l->mu);
    c->prev = NULL;
    c->next = l->clients;
    if (l->clients != NULL)
        l->clients->prev = c;
    l->clients = c;
    uv_mutex_unlock(&l->mu);
}

void cmx_limits_client_unregister(struct cmx_limits_client *c)
{
    struct cmx_limits *l = c->l;
    uv_mutex_lock(&l->mu);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        l->clients = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    l->retired.allowed += atomic_load_explicit(&c->allowed, memory_order_relaxed);
    l->retired.denied += atomic_load_explicit(&c->denied, memory_order_relaxed);
    l->retired.backend_errors += atomic_load_explicit(&c->errors, memory_order_relaxed);
    l->retired.fail_open += atomic_load_explicit(&c->fail_open, memory_order_relaxed);
    l->retired.fail_closed += atomic_load_explicit(&c->fail_closed, memory_order_relaxed);
    uv_mutex_unlock(&l->mu);
}

void cmx_limits_counters(struct cmx_limits *l, struct cmx_limits_counters *out)
{
    uv_mutex_lock(&l->mu);
    *out = l->retired;
    for (struct cmx_limits_client *c = l->clients; c != NULL; c = c->next) {
        out->allowed += atomic_load_explicit(&c->allowed, memory_order_relaxed);
        out->denied += atomic_load_explicit(&c->denied, memory_order_relaxed);
        out->backend_errors += atomic_load_explicit(&c->errors, memory_order_relaxed);
        out->fail_open += atomic_load_explicit(&c->fail_open, memory_order_relaxed);
        out->fail_closed += atomic_load_explicit(&c->fail_closed, memory_order_relaxed);
    }
    uv_mutex_unlock(&l->mu);
}

bool cmx_limits_reachable(const struct cmx_limits *l)
{
    return atomic_load_explicit(&((struct cmx_limits *)l)->up, memory_order_relaxed);
}

void cmx_limits_set_reachable(struct cmx_limits *l, bool up)
{
    atomic_store_explicit(&l->up, up, memory_order_relaxed);
}

const char *cmx_limits_backend_name(const struct cmx_limits *l)
{
    return l->ops->name;
}

const struct cmx_limits_config *cmx_limits_config_of(const struct cmx_limits *l)
{
    return &l->cfg;
}

void *cmx_limits_impl(const struct cmx_limits *l)
{
    return l->impl;
}

void cmx_limits_set_impl(struct cmx_limits *l, void *impl)
{
    l->impl = impl;
}

static void bump(_Atomic uint64_t *v)
{
    /* one writer per client: a relaxed load + store is enough and never contends */
    atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* ---- take / settle ---- */

static int prepare(const struct cmx_limits_bucket *b, size_t n, bool settle,
                   struct cmx_limits_req *req)
{
    if (n < 1 || n > CMX_LIMITS_MAX_BUCKETS || b == NULL)
        return CMX_EINVAL;
    req->n = n;
    req->settle = settle;
    for (size_t i = 0; i < n; i++) {
        struct cmx_limits_item *it = &req->items[i];
        if (b[i].key == NULL)
            return CMX_EINVAL;
        size_t kl = strnlen(b[i].key, CMX_LIMITS_KEY_MAX + 1);
        if (kl < 1 || kl > CMX_LIMITS_KEY_MAX)
            return CMX_EINVAL;
        if (!settle && b[i].cost < 0)
            return CMX_EINVAL;
        if (b[i].unit != CMX_LIMITS_REQUESTS && b[i].unit != CMX_LIMITS_TOKENS &&
            b[i].unit != CMX_LIMITS_QUOTA)
            return CMX_EINVAL;
        it->unit = b[i].unit;
        it->limit = b[i].limit;
        it->period_us = b[i].period_us;
        it->cost = b[i].cost;
        it->init = b[i].init;
        it->ttl_us = b[i].ttl_us;
        if (cmx_limits_gcra_params(it) != 0)
            return CMX_EINVAL;
        req->keys[i] = b[i].key;
        req->key_lens[i] = kl;
        for (size_t j = 0; j < i; j++) {
            if (req->key_lens[j] == kl && memcmp(req->keys[j], b[i].key, kl) == 0 &&
                req->items[j].id_limit == it->id_limit && req->items[j].period_us == it->period_us)
                return CMX_EINVAL;
        }
    }
    return 0;
}

int cmx_limits_take(struct cmx_limits_client *c, const struct cmx_limits_bucket *b, size_t n,
                    cmx_limits_cb cb, void *ud)
{
    struct cmx_limits_req req;
    int rc = prepare(b, n, false, &req);
    if (rc != 0)
        return rc;
    return c->l->ops->run(c, &req, cb, ud);
}

int cmx_limits_settle(struct cmx_limits_client *c, const struct cmx_limits_bucket *b, size_t n)
{
    struct cmx_limits_req req;
    int rc = prepare(b, n, true, &req);
    if (rc != 0)
        return rc;
    return c->l->ops->run(c, &req, NULL, NULL);
}

void cmx_limits_complete(struct cmx_limits_client *c, const struct cmx_limits_req *req, bool ok,
                         const int64_t *levels, cmx_limits_cb cb, void *ud)
{
    struct cmx_limits_result r;

    if (req->settle) {
        if (cb != NULL) {
            memset(&r, 0, sizeof(r));
            r.verdict = CMX_LIMITS_ALLOW;
            r.allowed = true;
            cb(ud, &r);
        }
        return;
    }
    r.verdict = ok ? CMX_LIMITS_ALLOW : CMX_LIMITS_DENY;
    r.allowed = ok;
    r.too_large = false;
    r.error = 0;
    r.retry_after_us = 0;
    r.n = req->n;
    for (size_t i = 0; i < req->n; i++) {
        const struct cmx_limits_item *it = &req->items[i];
        struct cmx_limits_state *st = &r.b[i];
        cmx_limits_gcra_state(it, levels[i], ok ? 0 : it->cost, st);
        if (ok) {
            st->allowed = true;
            continue;
        }
        if (st->retry_after_us < 0)
            r.too_large = true;
        else if (st->retry_after_us > r.retry_after_us)
            r.retry_after_us = st->retry_after_us;
    }
    if (r.too_large)
        r.retry_after_us = 0;
    bump(ok ? &c->allowed : &c->denied);
    if (cb != NULL)
        cb(ud, &r);
}

void cmx_limits_complete_error(struct cmx_limits_client *c, bool settle, int err, cmx_limits_cb cb,
                               void *ud)
{
    struct cmx_limits_result r;
    bool open = c->l->cfg.on_error == CMX_LIMITS_FAIL_OPEN;

    memset(&r, 0, sizeof(r));
    bump(&c->errors);
    if (!settle)
        bump(open ? &c->fail_open : &c->fail_closed);
    r.verdict = open ? CMX_LIMITS_ERROR_ALLOW : CMX_LIMITS_ERROR_DENY;
    r.allowed = open;
    r.error = err;
    r.retry_after_us = open ? 0 : 1000000;
    if (cb != NULL)
        cb(ud, &r);
}

/* ---- metrics ---- */

int cmx_limits_render_metrics(struct cmx_limits *l, struct cmx_buf *b)
{
    struct cmx_limits_counters k;
    cmx_limits_counters(l, &k);
    return cmx_buf_printf(
        b,
        "# HELP cloudmux_limits_decisions_total Rate-limit decisions the backend made.\n"
        "# TYPE cloudmux_limits_decisions_total counter\n"
        "cloudmux_limits_decisions_total{result=\"allowed\"} %" PRIu64 "\n"
        "cloudmux_limits_decisions_total{result=\"denied\"} %" PRIu64 "\n"
        "# HELP cloudmux_limits_backend_errors_total Takes and settlements the limits backend "
        "failed.\n"
        "# TYPE cloudmux_limits_backend_errors_total counter\n"
        "cloudmux_limits_backend_errors_total %" PRIu64 "\n"
        "# HELP cloudmux_limits_fail_open_total Requests let through because the limits backend "
        "failed (on_error: fail_open).\n"
        "# TYPE cloudmux_limits_fail_open_total counter\n"
        "cloudmux_limits_fail_open_total %" PRIu64 "\n"
        "# HELP cloudmux_limits_fail_closed_total Requests refused because the limits backend "
        "failed (on_error: fail_closed).\n"
        "# TYPE cloudmux_limits_fail_closed_total counter\n"
        "cloudmux_limits_fail_closed_total %" PRIu64 "\n"
        "# HELP cloudmux_limits_backend_up Whether the limits backend answered last time.\n"
        "# TYPE cloudmux_limits_backend_up gauge\n"
        "cloudmux_limits_backend_up{backend=\"%s\"} %d\n",
        k.allowed, k.denied, k.backend_errors, k.fail_open, k.fail_closed, l->ops->name,
        cmx_limits_reachable(l) ? 1 : 0);
}

/* ---- headers ---- */

size_t cmx_limits_format_duration(int64_t us, char *buf, size_t cap)
{
    int64_t ms = us <= 0 ? 0 : (us - 1) / 1000 + 1;
    int64_t h = ms / 3600000, m = ms / 60000 % 60, s = ms / 1000 % 60, f = ms % 1000;
    char frac[8] = "";
    int len;

    if (cap == 0)
        return 0;
    if (ms < 1000) {
        len = ms == 0 ? snprintf(buf, cap, "0s") : snprintf(buf, cap, "%" PRId64 "ms", ms);
    } else {
        if (f != 0) {
            snprintf(frac, sizeof(frac), ".%03" PRId64, f);
            size_t fl = strlen(frac);
            while (frac[fl - 1] == '0')
                frac[--fl] = '\0';
        }
        if (h > 0)
            len = snprintf(buf, cap, "%" PRId64 "h%" PRId64 "m%" PRId64 "%ss", h, m, s, frac);
        else if (m > 0)
            len = snprintf(buf, cap, "%" PRId64 "m%" PRId64 "%ss", m, s, frac);
        else
            len = snprintf(buf, cap, "%" PRId64 "%ss", s, frac);
    }
    if (len < 0)
        return 0;
    return (size_t)len >= cap ? cap - 1 : (size_t)len;
}

static void add_header(struct cmx_limits_headers *out, const char *name, int64_t v)
{
    if (out->n >= sizeof(out->h) / sizeof(out->h[0]))
        return;
    out->h[out->n].name = name;
    snprintf(out->h[out->n].value, sizeof(out->h[out->n].value), "%" PRId64, v);
    out->n++;
}

void cmx_limits_headers(const struct cmx_limits_result *r, struct cmx_limits_headers *out)
{
    static const char *const names[2][3] = {
        {"x-ratelimit-limit-requests", "x-ratelimit-remaining-requests",
         "x-ratelimit-reset-requests"},
        {"x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"},
    };
    out->n = 0;
    if (r->verdict == CMX_LIMITS_ALLOW || r->verdict == CMX_LIMITS_DENY) {
        for (int u = 0; u < 2; u++) {
            const struct cmx_limits_state *best = NULL;
            for (size_t i = 0; i < r->n && i < CMX_LIMITS_MAX_BUCKETS; i++) {
                const struct cmx_limits_state *s = &r->b[i];
                if ((int)s->unit != u)
                    continue;
                if (best == NULL || s->remaining < best->remaining ||
                    (s->remaining == best->remaining && s->reset_us > best->reset_us))
                    best = s;
            }
            if (best == NULL)
                continue;
            add_header(out, names[u][0], best->limit);
            add_header(out, names[u][1], best->remaining);
            if (out->n < sizeof(out->h) / sizeof(out->h[0])) {
                out->h[out->n].name = names[u][2];
                cmx_limits_format_duration(best->reset_us, out->h[out->n].value,
                                           sizeof(out->h[out->n].value));
                out->n++;
            }
        }
    }
    if ((r->verdict == CMX_LIMITS_DENY && !r->too_large) || r->verdict == CMX_LIMITS_ERROR_DENY) {
        int64_t us = r->retry_after_us < 1 ? 1 : r->retry_after_us;
        int64_t secs = (us - 1) / 1000000 + 1;
        add_header(out, "retry-after", secs);
        add_header(out, "retry-after-ms", (us - 1) / 1000 + 1);
    }
}
