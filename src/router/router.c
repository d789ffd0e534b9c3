#include "router/router.h"
#include "core/err.h"

#include <string.h>

int cmx_strategy_parse(const char *name)
{
    if (name == NULL || strcmp(name, "priority") == 0)
        return CMX_STRATEGY_PRIORITY;
    if (strcmp(name, "weighted") == 0)
        return CMX_STRATEGY_WEIGHTED;
    if (strcmp(name, "least_latency") == 0)
        return CMX_STRATEGY_LEAST_LATENCY;
    if (strcmp(name, "lowest_price") == 0)
        return CMX_STRATEGY_LOWEST_PRICE;
    return -1;
}

static atomic_uint_fast64_t generation;

uint64_t cmx_router_generation(void)
{
    return atomic_load(&generation);
}

int cmx_router_attach(struct cmx_config *cfg)
{
    uint64_t gen = atomic_fetch_add(&generation, 1) + 1;
    for (size_t i = 0; i < cfg->n_models; i++) {
        struct cmx_model_cfg *m = &cfg->models[i];
        for (size_t j = 0; j < m->n_deployments; j++) {
            struct cmx_deployment_cfg *d = &m->deployments[j];
            d->state = cmx_dep_state_get(m->name, d->provider->name, d->provider->cloud, d->model);
            if (d->state == NULL)
                return CMX_ENOMEM;
            atomic_store(&d->state->generation, gen);
        }
    }
    return cmx_router_none_state() ? 0 : CMX_ENOMEM;
}

struct cmx_dep_state *cmx_router_none_state(void)
{
    static struct cmx_dep_state *none;
    if (none == NULL)
        none = cmx_dep_state_get("", "", "", "");
    return none;
}

/* ---- ordering ---------------------------------------------------------------------------- */

typedef bool (*before_fn)(const struct cmx_deployment_cfg *a, const struct cmx_deployment_cfg *b);

static void sort(const struct cmx_deployment_cfg **v, size_t n, before_fn before)
{
    /* stable insertion sort: deployment lists are short */
    for (size_t i = 1; i < n; i++) {
        const struct cmx_deployment_cfg *d = v[i];
        size_t j = i;
        while (j > 0 && before(d, v[j - 1])) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = d;
    }
}

static bool by_priority(const struct cmx_deployment_cfg *a, const struct cmx_deployment_cfg *b)
{
    return a->priority < b->priority;
}

static int64_t price_of(const struct cmx_deployment_cfg *d)
{
    if (!d->has_price)
        return INT64_MAX;
    return d->price.input_per_mtok + d->price.output_per_mtok;
}

static bool by_price(const struct cmx_deployment_cfg *a, const struct cmx_deployment_cfg *b)
{
    int64_t pa = price_of(a), pb = price_of(b);
    return pa != pb ? pa < pb : a->priority < b->priority;
}

static int64_t latency_of(const struct cmx_deployment_cfg *d)
{
    int64_t v = d->state ? atomic_load_explicit(&d->state->ewma_ttfb_us, memory_order_relaxed) : -1;
    return v < 0 ? 0 : v; /* never measured: try it first to learn */
}

static bool by_latency(const struct cmx_deployment_cfg *a, const struct cmx_deployment_cfg *b)
{
    int64_t la = latency_of(a), lb = latency_of(b);
    return la != lb ? la < lb : a->priority < b->priority;
}

static bool by_weight(const struct cmx_deployment_cfg *a, const struct cmx_deployment_cfg *b)
{
    return a->weight > b->weight;
}

/* Rotates each run of equal keys by rr so that ties share the load. */
static void rotate_ties(const struct cmx_deployment_cfg **v, size_t n, uint64_t rr,
                        before_fn before)
{
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && !before(v[i], v[j]) && !before(v[j], v[i]))
            j++;
        size_t len = j - i;
        if (len > 1) {
            const struct cmx_deployment_cfg *tmp[CMX_ROUTE_MAX];
            for (size_t k = 0; k < len; k++)
                tmp[k] = v[i + (k + rr) % len];
            memcpy(&v[i], tmp, len * sizeof(tmp[0]));
        }
        i = j;
    }
}

/* nginx's smooth weighted round robin over v[0..n), using this worker's current weights:
 * the winner goes first, the others follow by weight (for failover). */
static void weighted(const struct cmx_deployment_cfg **v, size_t n, int worker)
{
    int64_t total = 0;
    const struct cmx_deployment_cfg *win = NULL;
    for (size_t i = 0; i < n; i++) {
        if (v[i]->weight <= 0 || v[i]->state == NULL)
            continue;
        struct cmx_dep_shard *sh = &v[i]->state->shards[worker];
        sh->swrr_current += v[i]->weight;
        total += v[i]->weight;
        if (win == NULL || sh->swrr_current > win->state->shards[worker].swrr_current)
            win = v[i];
    }
    sort(v, n, by_weight);
    if (win == NULL)
        return;
    win->state->shards[worker].swrr_current -= total;
    size_t k = 0;
    while (v[k] != win)
        k++;
    memmove(&v[1], &v[0], k * sizeof(v[0]));
    v[0] = win;
}

static void order_by(int strategy, const struct cmx_deployment_cfg **v, size_t n,
                     const struct cmx_route_input *in)
{
    if (n <= 1) {
        if (n == 1 && strategy == CMX_STRATEGY_WEIGHTED)
            weighted(v, n, in->worker);
        return;
    }
    switch (strategy) {
    case CMX_STRATEGY_WEIGHTED:
        weighted(v, n, in->worker);
        break;
    case CMX_STRATEGY_LEAST_LATENCY:
        sort(v, n, by_latency);
        /* explore: one request in 20 tries another deployment first, so a deployment that
         * recovered (or got faster) is measured again */
        if (in->rnd % 20 == 0) {
            size_t k = 1 + (size_t)((in->rnd / 20) % (n - 1));
            const struct cmx_deployment_cfg *d = v[k];
            memmove(&v[1], &v[0], k * sizeof(v[0]));
            v[0] = d;
        }
        break;
    case CMX_STRATEGY_LOWEST_PRICE:
        sort(v, n, by_price);
        rotate_ties(v, n, in->rr, by_price);
        break;
    default:
        sort(v, n, by_priority);
        rotate_ties(v, n, in->rr, by_priority);
        break;
    }
}

static bool circuit_ready(const struct cmx_deployment_cfg *d, uint64_t now_ms)
{
    if (d->state == NULL)
        return true;
    int c = atomic_load_explicit(&d->state->circuit, memory_order_relaxed);
    if (c == CMX_CIRCUIT_CLOSED)
        return true;
    return c == CMX_CIRCUIT_OPEN &&
           now_ms >= atomic_load_explicit(&d->state->open_until_ms, memory_order_relaxed);
}

/* Orders v by in->rank (stable: lower rank first), then each rank by the strategy, so a
 * preference never lets the strategy pick outside the preferred group first. */
static void order_ranked(int strategy, const struct cmx_deployment_cfg **v, size_t n,
                         const struct cmx_route_input *in)
{
    if (in->rank == NULL || n < 2) {
        order_by(strategy, v, n, in);
        return;
    }
    size_t rank[CMX_ROUTE_MAX];
    for (size_t i = 0; i < n; i++)
        rank[i] = in->rank(in->rank_ud, v[i]);
    for (size_t i = 1; i < n; i++) { /* insertion sort: n is small, and it is stable */
        const struct cmx_deployment_cfg *d = v[i];
        size_t r = rank[i], j = i;
        for (; j > 0 && rank[j - 1] > r; j--) {
            v[j] = v[j - 1];
            rank[j] = rank[j - 1];
        }
        v[j] = d;
        rank[j] = r;
    }
    for (size_t s = 0; s < n;) {
        size_t e = s + 1;
        while (e < n && rank[e] == rank[s])
            e++;
        order_by(strategy, v + s, e - s, in);
        s = e;
    }
}

int cmx_router_plan(const struct cmx_route_input *in, struct cmx_route *out, char **bad)
{
    const struct cmx_model_cfg *m = in->model;
    const struct cmx_deployment_cfg *cand[CMX_ROUTE_MAX];
    size_t nc = 0;
    out->n = out->n_eligible = out->n_excluded = 0;
    bool header = in->route != NULL && in->route[0] != '\0';
    if (header) {
        /* restrict and order by the header; names are provider names */
        char *p = (char *)in->route;
        while (*p != '\0') {
            while (*p == ' ' || *p == ',')
                p++;
            if (*p == '\0')
                break;
            char *name = p;
            while (*p != '\0' && *p != ',')
                p++;
            char *end = p;
            if (*p == ',')
                p++;
            while (end > name && end[-1] == ' ')
                end--;
            *end = '\0';
            bool found = false;
            for (size_t i = 0; i < m->n_deployments; i++) {
                const struct cmx_deployment_cfg *d = &m->deployments[i];
                if (strcmp(d->provider->name, name) != 0)
                    continue;
                found = true;
                bool dup = false;
                for (size_t k = 0; k < nc; k++)
                    dup |= cand[k] == d;
                if (!dup && nc < CMX_ROUTE_MAX)
                    cand[nc++] = d;
            }
            if (!found) {
                *bad = name;
                return CMX_EINVAL;
            }
        }
    } else {
        for (size_t i = 0; i < m->n_deployments && nc < CMX_ROUTE_MAX; i++)
            cand[nc++] = &m->deployments[i];
    }
    /* eligibility filters (agreements, tenants...) drop deployments for good */
    size_t kept = 0;
    for (size_t i = 0; i < nc; i++) {
        const char *why = NULL;
        bool ok = true;
        for (size_t f = 0; f < 4 && in->filters[f] != NULL && ok; f++)
            ok = in->filters[f](in->filter_ud[f], cand[i], &why);
        if (ok)
            cand[kept++] = cand[i];
        else if (out->n_excluded < CMX_ROUTE_MAX)
            out->excluded[out->n_excluded++] = (struct cmx_route_excluded){cand[i], why};
    }
    nc = kept;
    /* circuit state splits the rest: ready ones by strategy, open ones as a last resort */
    const struct cmx_deployment_cfg *ready[CMX_ROUTE_MAX], *open[CMX_ROUTE_MAX];
    size_t nr = 0, no = 0;
    for (size_t i = 0; i < nc; i++) {
        if (circuit_ready(cand[i], in->now_ms))
            ready[nr++] = cand[i];
        else
            open[no++] = cand[i];
    }
    int strategy = cmx_strategy_parse(m->strategy ? m->strategy : in->cfg->routing.strategy);
    if (strategy < 0)
        strategy = CMX_STRATEGY_PRIORITY;
    if (!header) {
        order_ranked(strategy, ready, nr, in);
        order_ranked(strategy == CMX_STRATEGY_WEIGHTED ? CMX_STRATEGY_PRIORITY : strategy, open, no,
                     in);
    }
    memcpy(out->order, ready, nr * sizeof(ready[0]));
    memcpy(out->order + nr, open, no * sizeof(open[0]));
    out->n = nr + no;
    out->n_eligible = nr;
    return 0;
}
