#include "router/health.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

static uv_mutex_t registry_lock;
static uv_once_t registry_once = UV_ONCE_INIT;
static struct cmx_dep_state *registry_head, **registry_tail = &registry_head;

static void registry_init(void)
{
    uv_mutex_init(&registry_lock);
}

uint64_t cmx_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static bool same(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

struct cmx_dep_state *cmx_dep_state_get(const char *model, const char *provider, const char *cloud,
                                        const char *upstream_model)
{
    uv_once(&registry_once, registry_init);
    uv_mutex_lock(&registry_lock);
    struct cmx_dep_state *s;
    for (s = registry_head; s != NULL; s = s->next)
        if (same(s->model, model) && same(s->provider, provider) &&
            same(s->upstream_model, upstream_model))
            break;
    if (s == NULL) {
        s = aligned_alloc(64, (sizeof(*s) + 63) & ~(size_t)63);
        if (s != NULL) {
            memset(s, 0, sizeof(*s));
            s->model = strdup(model ? model : "");
            s->provider = strdup(provider ? provider : "");
            s->upstream_model = strdup(upstream_model ? upstream_model : "");
            s->cloud = strdup(cloud ? cloud : "");
            atomic_init(&s->ewma_ttfb_us, -1);
            if (!s->model || !s->provider || !s->upstream_model || !s->cloud) {
                free(s->model), free(s->provider), free(s->upstream_model), free(s->cloud);
                free(s);
                s = NULL;
            } else {
                *registry_tail = s;
                registry_tail = &s->next;
            }
        }
    } else if (!same(s->cloud, cloud)) {
        /* the provider's cloud label changed: labels are read without the lock, so the
         * old string is kept (leaked until exit) rather than freed under a reader */
        char *c = strdup(cloud ? cloud : "");
        if (c != NULL)
            s->cloud = c;
    }
    uv_mutex_unlock(&registry_lock);
    return s;
}

void cmx_dep_states_each(void (*fn)(struct cmx_dep_state *s, void *arg), void *arg)
{
    uv_once(&registry_once, registry_init);
    uv_mutex_lock(&registry_lock);
    struct cmx_dep_state *head = registry_head;
    uv_mutex_unlock(&registry_lock);
    /* states are only ever appended: walking without the lock is safe */
    for (struct cmx_dep_state *s = head; s != NULL; s = s->next)
        fn(s, arg);
}

void cmx_dep_states_free(void)
{
    struct cmx_dep_state *s = registry_head;
    while (s != NULL) {
        struct cmx_dep_state *next = s->next;
        free(s->model);
        free(s->provider);
        free(s->upstream_model);
        free(s->cloud);
        free(s);
        s = next;
    }
    registry_head = NULL;
    registry_tail = &registry_head;
}

bool cmx_breaker_allow(struct cmx_dep_state *s, uint64_t now_ms, bool *probe)
{
    *probe = false;
    int c = atomic_load_explicit(&s->circuit, memory_order_acquire);
    if (c == CMX_CIRCUIT_CLOSED)
        return true;
    if (c == CMX_CIRCUIT_HALF_OPEN)
        return false; /* a probe is already out */
    if (now_ms < atomic_load_explicit(&s->open_until_ms, memory_order_relaxed))
        return false;
    int expected = CMX_CIRCUIT_OPEN;
    if (atomic_compare_exchange_strong(&s->circuit, &expected, CMX_CIRCUIT_HALF_OPEN)) {
        atomic_store(&s->last_change_ms, wall_ms());
        *probe = true;
        return true;
    }
    return false;
}

void cmx_breaker_success(struct cmx_dep_state *s, bool probe)
{
    atomic_store_explicit(&s->consecutive_failures, 0, memory_order_relaxed);
    if (probe || atomic_load_explicit(&s->circuit, memory_order_relaxed) != CMX_CIRCUIT_CLOSED) {
        int expected = CMX_CIRCUIT_HALF_OPEN;
        if (atomic_compare_exchange_strong(&s->circuit, &expected, CMX_CIRCUIT_CLOSED))
            atomic_store(&s->last_change_ms, wall_ms());
        else if (probe) {
            atomic_store(&s->circuit, CMX_CIRCUIT_CLOSED);
            atomic_store(&s->last_change_ms, wall_ms());
        }
    }
}

static void open_until(struct cmx_dep_state *s, uint64_t until)
{
    uint64_t cur = atomic_load(&s->open_until_ms);
    while (cur < until && !atomic_compare_exchange_weak(&s->open_until_ms, &cur, until))
        ;
    if (atomic_exchange(&s->circuit, CMX_CIRCUIT_OPEN) != CMX_CIRCUIT_OPEN)
        atomic_store(&s->last_change_ms, wall_ms());
}

bool cmx_breaker_failure(struct cmx_dep_state *s, const struct cmx_breaker_cfg *cfg, bool probe,
                         int64_t retry_after_ms, uint64_t now_ms)
{
    int n = atomic_fetch_add(&s->consecutive_failures, 1) + 1;
    int before = atomic_load(&s->circuit);
    if (retry_after_ms >= 0 && retry_after_ms > cfg->max_wait_ms) {
        open_until(s, now_ms + (uint64_t)retry_after_ms);
        return before != CMX_CIRCUIT_OPEN;
    }
    if (probe || before == CMX_CIRCUIT_HALF_OPEN || (cfg->failures > 0 && n >= cfg->failures)) {
        if (probe) /* a failed probe restarts the cooldown */
            atomic_store(&s->open_until_ms, now_ms + (uint64_t)cfg->cooldown_ms);
        else
            open_until(s, now_ms + (uint64_t)cfg->cooldown_ms);
        if (atomic_exchange(&s->circuit, CMX_CIRCUIT_OPEN) != CMX_CIRCUIT_OPEN) {
            atomic_store(&s->last_change_ms, wall_ms());
            return true;
        }
        return before != CMX_CIRCUIT_OPEN;
    }
    return false;
}

void cmx_breaker_probe_abandoned(struct cmx_dep_state *s, bool probe)
{
    if (!probe)
        return;
    int expected = CMX_CIRCUIT_HALF_OPEN;
    atomic_compare_exchange_strong(&s->circuit, &expected, CMX_CIRCUIT_OPEN);
}

void cmx_dep_observe_ttfb(struct cmx_dep_state *s, uint64_t us)
{
    int64_t cur = atomic_load_explicit(&s->ewma_ttfb_us, memory_order_relaxed);
    int64_t next = cur < 0 ? (int64_t)us : cur + ((int64_t)us - cur) / 5;
    atomic_store_explicit(&s->ewma_ttfb_us, next, memory_order_relaxed);
}

void cmx_dep_observe_outcome(struct cmx_dep_state *s, bool failed)
{
    int64_t cur = atomic_load_explicit(&s->error_rate_ppm, memory_order_relaxed);
    int64_t x = failed ? 1000000 : 0;
    atomic_store_explicit(&s->error_rate_ppm, cur + (x - cur) / 20, memory_order_relaxed);
}

void cmx_counter_add(atomic_uint_fast64_t *c, uint64_t v)
{
    /* one writer per shard: a plain relaxed load + store, no locked instruction */
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

void cmx_hist_observe(struct cmx_hist *h, uint64_t us)
{
    static const uint64_t bounds[CMX_N_BUCKETS] = CMX_HIST_BOUNDS_MS;
    size_t i = 0;
    while (i < CMX_N_BUCKETS && us > bounds[i] * 1000u)
        i++;
    cmx_counter_add(&h->buckets[i], 1);
    cmx_counter_add(&h->sum_us, us);
}

_Static_assert(CMX_N_CODES == 1
#define XX(c) +1
                   CMX_METRIC_CODES(XX)
#undef XX
                   ,
               "CMX_N_CODES must be the number of tracked codes + 1");

int cmx_metric_code_slot(int status)
{
    static const int codes[] = {
#define XX(c) c,
        CMX_METRIC_CODES(XX)
#undef XX
    };
    for (int i = 0; i < (int)(sizeof(codes) / sizeof(codes[0])); i++)
        if (codes[i] == status)
            return i;
    return CMX_N_CODES - 1;
}
