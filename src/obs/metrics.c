#include "obs/metrics.h"
#include "router/health.h"
#include "router/router.h"

#include <inttypes.h>
#include <string.h>

static const int codes[] = {
#define XX(c) c,
    CMX_METRIC_CODES(XX)
#undef XX
};

static const char *const outcomes[CMX_N_OUTCOMES] = {
    "success", "http_429", "http_4xx", "http_5xx", "connect_error",
    "timeout", "reset",    "canceled", "error",
};

static const uint64_t bounds_ms[CMX_N_BUCKETS] = CMX_HIST_BOUNDS_MS;

/* Writes a label value with Prometheus escaping. */
static void label(struct cmx_buf *b, const char *name, const char *v, bool first)
{
    cmx_buf_printf(b, "%s%s=\"", first ? "" : ",", name);
    for (const char *p = v; *p; p++) {
        if (*p == '\\')
            cmx_buf_puts(b, "\\\\");
        else if (*p == '"')
            cmx_buf_puts(b, "\\\"");
        else if (*p == '\n')
            cmx_buf_puts(b, "\\n");
        else
            cmx_buf_append(b, p, 1);
    }
    cmx_buf_puts(b, "\"");
}

static uint64_t rd(const atomic_uint_fast64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

struct hist_sum {
    uint64_t buckets[CMX_N_BUCKETS + 1];
    uint64_t sum_us;
};

static void hist_add(struct hist_sum *out, const struct cmx_hist *h)
{
    for (int i = 0; i <= CMX_N_BUCKETS; i++)
        out->buckets[i] += rd(&h->buckets[i]);
    out->sum_us += rd(&h->sum_us);
}

static void hist_print(struct cmx_buf *b, const char *name, const char *labels,
                       const struct hist_sum *h)
{
    uint64_t cum = 0;
    for (int i = 0; i < CMX_N_BUCKETS; i++) {
        cum += h->buckets[i];
        cmx_buf_printf(b, "%s_bucket{%s,le=\"%" PRIu64 ".%03" PRIu64 "\"} %" PRIu64 "\n", name,
                       labels, bounds_ms[i] / 1000, bounds_ms[i] % 1000, cum);
    }
    cum += h->buckets[CMX_N_BUCKETS];
    cmx_buf_printf(b, "%s_bucket{%s,le=\"+Inf\"} %" PRIu64 "\n", name, labels, cum);
    cmx_buf_printf(b, "%s_sum{%s} %" PRIu64 ".%06" PRIu64 "\n", name, labels, h->sum_us / 1000000,
                   h->sum_us % 1000000);
    cmx_buf_printf(b, "%s_count{%s} %" PRIu64 "\n", name, labels, cum);
}

/* Each metric family is written by one pass over every state. */
struct pass {
    struct cmx_buf *b;
    int which;
};

enum { REQ, ATT, DUR, TTFB, UP, TOK, CIRC };

static void model_provider_labels(struct cmx_buf *lb, const struct cmx_dep_state *s)
{
    cmx_buf_reset(lb);
    label(lb, "model", s->model, true);
    label(lb, "provider", s->provider, false);
}

static void each_state(struct cmx_dep_state *s, void *arg)
{
    struct pass *p = arg;
    struct cmx_buf *b = p->b;
    struct cmx_buf lb;
    cmx_buf_init(&lb, 1u << 16);
    switch (p->which) {
    case REQ:
        for (int c = 0; c < CMX_N_CODES; c++) {
            uint64_t v = 0;
            for (int w = 0; w < CMX_MAX_WORKERS; w++)
                v += rd(&s->shards[w].requests[c]);
            if (v == 0)
                continue;
            cmx_buf_puts(b, "cloudmux_requests_total{");
            label(b, "model", s->model, true);
            label(b, "provider", s->provider, false);
            label(b, "cloud", s->cloud, false);
            if (c < CMX_N_CODES - 1)
                cmx_buf_printf(b, ",code=\"%d\"} %" PRIu64 "\n", codes[c], v);
            else
                cmx_buf_printf(b, ",code=\"other\"} %" PRIu64 "\n", v);
        }
        break;
    case ATT:
        if (s->provider[0] == '\0')
            break;
        for (int o = 0; o < CMX_N_OUTCOMES; o++) {
            uint64_t v = 0;
            for (int w = 0; w < CMX_MAX_WORKERS; w++)
                v += rd(&s->shards[w].attempts[o]);
            if (v == 0)
                continue;
            cmx_buf_puts(b, "cloudmux_upstream_attempts_total{");
            label(b, "model", s->model, true);
            label(b, "provider", s->provider, false);
            cmx_buf_printf(b, ",outcome=\"%s\"} %" PRIu64 "\n", outcomes[o], v);
        }
        break;
    case DUR:
    case TTFB:
    case UP: {
        struct hist_sum h;
        memset(&h, 0, sizeof(h));
        for (int w = 0; w < CMX_MAX_WORKERS; w++)
            hist_add(&h, p->which == DUR    ? &s->shards[w].duration
                         : p->which == TTFB ? &s->shards[w].ttfb
                                            : &s->shards[w].upstream);
        uint64_t n = 0;
        for (int i = 0; i <= CMX_N_BUCKETS; i++)
            n += h.buckets[i];
        if (n == 0 || (p->which == UP && s->provider[0] == '\0'))
            break;
        model_provider_labels(&lb, s);
        hist_print(b,
                   p->which == DUR    ? "cloudmux_request_duration_seconds"
                   : p->which == TTFB ? "cloudmux_time_to_first_byte_seconds"
                                      : "cloudmux_upstream_duration_seconds",
                   lb.data, &h);
        break;
    }
    case TOK: {
        static const char *const types[3] = {"prompt", "completion", "cached"};
        for (int t = 0; t < 3; t++) {
            uint64_t v = 0;
            for (int w = 0; w < CMX_MAX_WORKERS; w++)
                v += rd(&s->shards[w].tokens[t]);
            if (v == 0 || s->provider[0] == '\0')
                continue;
            cmx_buf_puts(b, "cloudmux_tokens_total{");
            label(b, "model", s->model, true);
            label(b, "provider", s->provider, false);
            cmx_buf_printf(b, ",type=\"%s\"} %" PRIu64 "\n", types[t], v);
        }
        break;
    }
    case CIRC:
        /* only deployments of the running config: a removed one has no circuit to show */
        if (s->provider[0] == '\0' || atomic_load(&s->generation) != cmx_router_generation())
            break;
        cmx_buf_puts(b, "cloudmux_circuit_open{");
        label(b, "model", s->model, true);
        label(b, "provider", s->provider, false);
        cmx_buf_printf(b, "} %d\n", atomic_load(&s->circuit) != CMX_CIRCUIT_CLOSED ? 1 : 0);
        break;
    }
    cmx_buf_free(&lb);
}

static void family(struct cmx_buf *b, int which, const char *name, const char *type,
                   const char *help)
{
    cmx_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    struct pass p = {b, which};
    cmx_dep_states_each(each_state, &p);
}

int cmx_metrics_render(struct cmx_buf *b, int64_t inflight)
{
    family(b, REQ, "cloudmux_requests_total", "counter",
           "Requests answered, by public model, provider that served, its cloud and status.");
    family(b, ATT, "cloudmux_upstream_attempts_total", "counter",
           "Upstream attempts by provider and outcome.");
    family(b, DUR, "cloudmux_request_duration_seconds", "histogram",
           "Time from the request's first byte to the end of the answer.");
    family(b, TTFB, "cloudmux_time_to_first_byte_seconds", "histogram",
           "Time from the request's first byte to the first byte of the answer.");
    family(b, UP, "cloudmux_upstream_duration_seconds", "histogram",
           "Duration of one upstream attempt.");
    family(b, TOK, "cloudmux_tokens_total", "counter",
           "Tokens reported by upstreams, by type (prompt, completion, cached).");
    cmx_buf_printf(b,
                   "# HELP cloudmux_inflight_requests Requests being handled now.\n"
                   "# TYPE cloudmux_inflight_requests gauge\ncloudmux_inflight_requests %" PRId64
                   "\n",
                   inflight);
    family(b, CIRC, "cloudmux_circuit_open", "gauge",
           "1 while a deployment's circuit breaker is open or half-open.");
    return cmx_buf_puts(b, "");
}
