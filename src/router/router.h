/* Routing: for one request, the model's deployments -> those eligible (circuit not open;
 * later filters such as agreements, tenants and regions plug into the same seam) ->
 * ordered by the strategy -> tried in that order by the proxy. */
#ifndef CMX_ROUTER_ROUTER_H
#define CMX_ROUTER_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "router/health.h"

#define CMX_ROUTE_MAX 64

enum cmx_strategy {
    CMX_STRATEGY_PRIORITY,      /* lowest priority first, ties round-robin */
    CMX_STRATEGY_WEIGHTED,      /* smooth weighted round robin on weight */
    CMX_STRATEGY_LEAST_LATENCY, /* lowest EWMA time-to-first-byte, with some exploration */
    CMX_STRATEGY_LOWEST_PRICE,  /* lowest input+output price, then priority */
};

/* An eligibility filter: returns true when d may serve this request; otherwise sets *why
 * (a static or arena string) for the error listing. */
typedef bool (*cmx_route_filter_fn)(void *ud, const struct cmx_deployment_cfg *d, const char **why);

struct cmx_route_input {
    const struct cmx_config *cfg;      /* snapshot */
    const struct cmx_model_cfg *model; /* the public model */
    int worker;                        /* worker index, for per-worker strategy state */
    uint64_t rr;                       /* round-robin counter (ties) */
    uint64_t rnd;                      /* random value (exploration) */
    uint64_t now_ms;                   /* cmx_mono_ms() */
    const char *route;                 /* x-cloudmux-route header value, or NULL */
    cmx_route_filter_fn filters[4];    /* extra eligibility filters, NULL-terminated */
    void *filter_ud[4];
    /* optional preference (a tenant's clouds): deployments of lower rank go first; the
     * strategy orders within a rank. NULL: one rank. */
    size_t (*rank)(const void *ud, const struct cmx_deployment_cfg *d);
    const void *rank_ud;
};

struct cmx_route_excluded {
    const struct cmx_deployment_cfg *d; /* a deployment a filter excluded */
    const char *why;                    /* the filter's reason */
};

struct cmx_route {
    const struct cmx_deployment_cfg *order[CMX_ROUTE_MAX]; /* attempt order */
    size_t n;
    size_t n_eligible; /* order[0..n_eligible) have closed (or probe-ready) circuits;
                        * the rest are open and only used when nothing else is left */
    struct cmx_route_excluded excluded[CMX_ROUTE_MAX]; /* dropped by filters */
    size_t n_excluded;
};

/* Parses a strategy name; -1 when unknown. */
int cmx_strategy_parse(const char *name);

/* Plans the attempt order for one request. Returns 0; CMX_EINVAL when the route header
 * names a provider that is not a deployment of the model (*bad = that name, an arena-free
 * pointer into a static buffer of the caller: the header copy in in->route is modified). */
int cmx_router_plan(const struct cmx_route_input *in, struct cmx_route *out, char **bad);

/* Attaches the shared state of every deployment of cfg (creating new ones). Call after
 * loading a config, before it serves. 0 or CMX_ENOMEM. */
int cmx_router_attach(struct cmx_config *cfg);

/* Generation of the latest cmx_router_attach() (states of deployments that the running
 * config no longer has keep an older one). */
uint64_t cmx_router_generation(void);

/* The catch-all state used for requests that reach no deployment (metrics only). */
struct cmx_dep_state *cmx_router_none_state(void);

#endif
