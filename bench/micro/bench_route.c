/* Micro-benchmark of the routing decision on the request path: what one request costs in
 * cmx_router_plan() for a model, with and without the distribution-agreements filter
 * (including cmx_caps_from_request() over a typical chat body), on one core.
 *
 *   build/bench_route [CONFIG [MODEL [ITERATIONS]]]
 *   default: examples/partnership.yaml gpt-5 2000000
 *
 * Prints ns per request for each and, given the gateway's CPU per request measured by
 * bench/run.sh (CMX_CPU_US_PER_REQ, default 25), the share of it the filter takes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agreements/agreements.h"
#include "config/config.h"
#include "core/arena.h"
#include "core/clock.h"
#include "core/json_scan.h"
#include "router/router.h"

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static const char BODY[] =
    "{\"model\":\"gpt-5\",\"messages\":[{\"role\":\"system\",\"content\":\"You are terse.\"},"
    "{\"role\":\"user\",\"content\":\"Say hello in five words.\"}],\"max_tokens\":64,"
    "\"temperature\":0.2}";

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "examples/partnership.yaml";
    const char *name = argc > 2 ? argv[2] : "gpt-5";
    long iters = argc > 3 ? atol(argv[3]) : 2000000;
    const char *cpu = getenv("CMX_CPU_US_PER_REQ");
    double cpu_us = cpu ? atof(cpu) : 25.0;
    struct cmx_config *cfg = NULL;
    struct cmx_config_diag diag;

    memset(&diag, 0, sizeof(diag));
    if (cmx_config_load(path, &cfg, &diag) != 0 || cmx_router_attach(cfg) != 0) {
        fprintf(stderr, "bench_route: cannot load %s\n", path);
        return 1;
    }
    const struct cmx_model_cfg *m = cmx_config_find_model(cfg, name, strlen(name));
    if (m == NULL) {
        fprintf(stderr, "bench_route: no model %s in %s\n", name, path);
        return 1;
    }
    struct cmx_json_member mem[16];
    enum cmx_json_type top;
    size_t nm = 0;
    cmx_json_scan(BODY, sizeof(BODY) - 1, &top, mem, 16, &nm);
    struct cmx_arena a;
    cmx_arena_init(&a);
    uint64_t at = cmx_clock_now_ms();
    double ns[2];
    size_t served = 0;

    for (int with = 0; with < 2; with++) {
        double t0 = now_ns();
        for (long i = 0; i < iters; i++) {
            struct cmx_route_input in = {.cfg = cfg,
                                         .model = m,
                                         .rr = (uint64_t)i,
                                         .rnd = (uint64_t)i * 0x9e3779b97f4a7c15ull,
                                         .now_ms = (uint64_t)i};
            struct cmx_agreement_check chk;
            struct cmx_route r;
            char *bad = NULL;
            if (with && cfg->agreements != NULL) {
                chk = (struct cmx_agreement_check){
                    .cfg = cfg,
                    .model = m,
                    .caps = cmx_caps_from_request(0, BODY, sizeof(BODY) - 1, mem, nm),
                    .now_ms = at,
                    .arena = &a,
                };
                in.filters[0] = cmx_agreements_filter;
                in.filter_ud[0] = &chk;
            }
            cmx_router_plan(&in, &r, &bad);
            served += r.n;
        }
        ns[with] = (now_ns() - t0) / (double)iters;
        cmx_arena_reset(&a);
    }
    printf("route plan for %s (%zu deployments): %.1f ns/request without agreements, %.1f ns "
           "with (filter %.1f ns = %.3f %% of %.0f us CPU per request)\n",
           name, m->n_deployments, ns[0], ns[1], ns[1] - ns[0],
           (ns[1] - ns[0]) / (cpu_us * 1000.0) * 100.0, cpu_us);
    printf("routing as a whole: %.3f %% of %.0f us CPU per request (checksum %zu)\n",
           ns[1] / (cpu_us * 1000.0) * 100.0, cpu_us, served);
    cmx_arena_reset(&a);
    cmx_config_unref(cfg);
    return 0;
}
