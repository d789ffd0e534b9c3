/* Property test for the agreements engine: for random generated configs and times, the
 * precomputed interval lookup that routing uses (cmx_agreements_reason and the routing
 * filter) agrees with a brute-force evaluation of the rules written here from the issue's
 * text, and with the matrix JSON (`agreements matrix --format json`, the admin API). Also:
 * next_change and allowed_from are consistent with the lookup. Deterministic seeds. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agreements/agreements.h"
#include "config/config.h"
#include "core/buf.h"
#include "core/clock.h"

#define CONFIGS 400
#define DAY     CMX_CLOCK_DAY_MS

static uint64_t rng;

static uint64_t next(void)
{
    uint64_t z = (rng += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static unsigned pick(unsigned n)
{
    return (unsigned)(next() % n);
}

static bool chance(unsigned percent)
{
    return pick(100) < percent;
}

static const char *const cap_names[] = {"chat", "embeddings", "tools", "vision", "audio"};

/* 2026-01-01 + d days, as text. */
static void day_text(unsigned d, char *buf)
{
    cmx_clock_format_date(INT64_C(1767225600000) + (int64_t)d * DAY, buf, 16);
}

/* A random product list "[pr0, pr2]" (non-empty) into b. */
static void product_list(struct cmx_buf *b, unsigned n_products)
{
    unsigned mask = 0;
    while (mask == 0)
        mask = pick(1u << n_products);
    cmx_buf_puts(b, "[");
    for (unsigned i = 0, first = 1; i < n_products; i++) {
        if (mask & (1u << i)) {
            cmx_buf_printf(b, "%spr%u", first ? "" : ", ", i);
            first = 0;
        }
    }
    cmx_buf_puts(b, "]");
}

static void generate(struct cmx_buf *b, unsigned *n_clouds_out)
{
    unsigned n_clouds = 2 + pick(3), n_products = 1 + pick(3), n_agreements = pick(4);
    char d1[16], d2[16];

    *n_clouds_out = n_clouds;
    cmx_buf_puts(b, "providers:\n");
    for (unsigned c = 0; c < n_clouds; c++)
        cmx_buf_printf(b,
                       "  - { name: pv%u, type: openai_compatible, cloud: c%u, base_url: "
                       "http://127.0.0.1:1 }\n",
                       c, c);
    cmx_buf_puts(b, "models:\n");
    for (unsigned p = 0; p < n_products; p++) {
        cmx_buf_printf(b, "  - name: pr%u\n    deployments:\n", p);
        for (unsigned c = 0; c < n_clouds; c++)
            cmx_buf_printf(b, "      - { provider: pv%u, model: x }\n", c);
    }
    cmx_buf_puts(b, "  - name: free\n    deployments: [{ provider: pv0, model: x }]\n");
    if (chance(70))
        cmx_buf_printf(b, "maker: c%u\n", pick(n_clouds));
    cmx_buf_puts(b, "products:\n");
    for (unsigned p = 0; p < n_products; p++) {
        unsigned caps = 0;
        while (caps == 0)
            caps = pick(32);
        cmx_buf_printf(b, "  - name: pr%u\n    core: %s\n    capabilities: [", p,
                       chance(60) ? "true" : "false");
        for (unsigned k = 0, first = 1; k < 5; k++) {
            if (caps & (1u << k)) {
                cmx_buf_printf(b, "%s%s", first ? "" : ", ", cap_names[k]);
                first = 0;
            }
        }
        cmx_buf_puts(b, "]\n    launches: {");
        for (unsigned c = 0, first = 1; c < n_clouds; c++) {
            if (!chance(75))
                continue;
            day_text(pick(60), d1);
            cmx_buf_printf(b, "%s c%u: %s", first ? "" : ",", c, d1);
            first = 0;
        }
        cmx_buf_puts(b, " }\n");
    }
    if (n_agreements > 0 || chance(50))
        cmx_buf_puts(b, "agreements:\n");
    for (unsigned i = 0; i < n_agreements; i++) {
        unsigned n_versions = 1 + pick(3);
        uint64_t used = 0;
        cmx_buf_printf(b, "  - id: a%u\n    versions:\n", i);
        for (unsigned k = 0; k < n_versions; k++) {
            unsigned eff;
            do
                eff = pick(50);
            while (used & (UINT64_C(1) << eff)); /* one version per date */
            used |= UINT64_C(1) << eff;
            day_text(eff, d1);
            cmx_buf_printf(b, "      - effective: %s\n", d1);
            if (chance(55)) {
                cmx_buf_printf(b, "        primary_cloud: c%u\n        first_launch:\n",
                               pick(n_clouds));
                unsigned scope = pick(3);
                if (scope == 0)
                    cmx_buf_puts(b, "          products: core\n");
                else if (scope == 1)
                    cmx_buf_puts(b, "          products: \"*\"\n");
                else {
                    cmx_buf_puts(b, "          products: ");
                    product_list(b, n_products);
                    cmx_buf_puts(b, "\n");
                }
                cmx_buf_printf(b, "          holdback_days: %u\n", pick(6));
                unsigned n_opt = pick(3);
                if (n_opt > 0)
                    cmx_buf_puts(b, "          opt_outs:\n");
                for (unsigned o = 0; o < n_opt; o++) {
                    unsigned kind = pick(3);
                    cmx_buf_puts(b, "            - {");
                    if (kind != 1)
                        cmx_buf_printf(b, " product: pr%u,", pick(n_products));
                    if (kind != 0)
                        cmx_buf_printf(b, " capability: %s,", cap_names[pick(5)]);
                    if (chance(60)) {
                        day_text(pick(60), d2);
                        cmx_buf_printf(b, " since: %s", d2);
                    }
                    cmx_buf_puts(b, " }\n");
                }
            }
            unsigned n_lic = pick(4);
            if (n_lic > 0)
                cmx_buf_puts(b, "        licences:\n");
            for (unsigned l = 0; l < n_lic; l++) {
                unsigned from = eff;
                cmx_buf_printf(b, "          - { licensee: c%u, products: ", pick(n_clouds));
                if (chance(50))
                    cmx_buf_puts(b, "\"*\"");
                else
                    product_list(b, n_products);
                if (chance(35)) {
                    from = pick(60);
                    day_text(from, d2);
                    cmx_buf_printf(b, ", from: %s", d2);
                }
                unsigned lo = from > eff ? from : eff;
                day_text(lo + pick(40), d2);
                cmx_buf_printf(b, ", until: %s, exclusive: %s }\n", d2,
                               chance(25) ? "true" : "false");
            }
            if (chance(30)) {
                day_text(eff + pick(30), d2);
                cmx_buf_printf(b,
                               "        revenue_shares:\n          - { payee: x, rate: 0.1, "
                               "base: { clouds: [c%u] }, until: %s }\n",
                               pick(n_clouds), d2);
            }
        }
    }
}

/* ---- the rules, brute force ---------------------------------------------------------- */

static const struct cmx_agr_version *version_at(const struct cmx_agr_agreement *ag, int64_t t)
{
    const struct cmx_agr_version *best = NULL;
    for (size_t i = 0; i < ag->n_versions; i++) {
        if (ag->versions[i].effective <= t &&
            (best == NULL || ag->versions[i].effective > best->effective))
            best = &ag->versions[i];
    }
    return best;
}

static bool covers(const struct cmx_agreements *a, const struct cmx_agr_scope *s, size_t p)
{
    if (s->kind == CMX_AGR_SCOPE_ALL)
        return true;
    if (s->kind == CMX_AGR_SCOPE_CORE)
        return a->products[p].core;
    for (size_t i = 0; i < s->n_products; i++) {
        if (s->products[i] == p)
            return true;
    }
    return false;
}

static enum cmx_agr_reason oracle(const struct cmx_agreements *a, size_t p, size_t c, unsigned cap,
                                  int64_t t)
{
    int64_t launch = a->products[p].launches[c];
    bool launched = launch != CMX_AGR_NEVER && launch <= t;
    bool live = false, expired = false, shut_out = false, awaiting = false, held = false;

    if (a->maker_cloud == (int64_t)c)
        return launched ? CMX_AGR_ALLOWED : CMX_AGR_NOT_LAUNCHED;
    for (size_t i = 0; i < a->n_agreements; i++) {
        const struct cmx_agr_version *v = version_at(&a->agreements[i], t);
        if (v == NULL)
            continue;
        for (size_t j = 0; j < v->n_licences; j++) {
            const struct cmx_agr_licence *l = &v->licences[j];
            if (!covers(a, &l->scope, p))
                continue;
            bool in_force = l->from <= t && t <= l->until;
            if (l->cloud == c) {
                live = live || in_force;
                expired = expired || t > l->until;
            } else if (in_force && l->exclusive) {
                shut_out = true;
            }
        }
        if (v->has_first_launch && v->primary >= 0 && (size_t)v->primary != c &&
            covers(a, &v->first_launch, p)) {
            bool opted = false;
            for (size_t j = 0; j < v->n_opt_outs; j++) {
                const struct cmx_agr_optout *o = &v->opt_outs[j];
                if ((o->product < 0 || (size_t)o->product == p) &&
                    (o->caps == 0 || (o->caps & cap)) && o->since <= t)
                    opted = true;
            }
            int64_t lp = a->products[p].launches[v->primary];
            if (!opted && (lp == CMX_AGR_NEVER || t < lp))
                awaiting = true;
            else if (!opted && t < (lp / DAY) * DAY + v->holdback_days * DAY)
                held = true;
        }
    }
    if (shut_out)
        return CMX_AGR_EXCLUSIVE_TO_OTHER;
    if (!live)
        return expired ? CMX_AGR_LICENCE_EXPIRED : CMX_AGR_NO_LICENCE;
    if (!launched)
        return CMX_AGR_NOT_LAUNCHED;
    if (awaiting)
        return CMX_AGR_AWAITING_PRIMARY_LAUNCH;
    if (held)
        return CMX_AGR_HOLDBACK;
    return CMX_AGR_ALLOWED;
}

static enum cmx_agr_reason oracle_caps(const struct cmx_agreements *a, size_t p, size_t c,
                                       unsigned caps, int64_t t)
{
    enum cmx_agr_reason best = CMX_AGR_ALLOWED;
    for (unsigned k = 0; k < CMX_CAP_COUNT; k++) {
        if (!(caps & (1u << k)))
            continue;
        enum cmx_agr_reason r = oracle(a, p, c, 1u << k, t);
        if (r != CMX_AGR_ALLOWED && (best == CMX_AGR_ALLOWED || r < best))
            best = r;
    }
    return best;
}

/* ---- the property ------------------------------------------------------------------ */

/* Instants worth testing: every date of the terms, the millisecond before it, and some
 * random ones. */
static size_t times(const struct cmx_agreements *a, int64_t *v, size_t cap)
{
    size_t n = 0;
#define ADD(x)                                                                                     \
    do {                                                                                           \
        int64_t x_ = (x);                                                                          \
        if (x_ != CMX_AGR_NEVER && n + 2 < cap) {                                                  \
            v[n++] = x_;                                                                           \
            v[n++] = x_ - 1;                                                                       \
        }                                                                                          \
    } while (0)
    for (size_t p = 0; p < a->n_products; p++) {
        for (size_t c = 0; c < a->n_clouds; c++) {
            ADD(a->products[p].launches[c]);
            if (a->products[p].launches[c] != CMX_AGR_NEVER)
                for (int h = 1; h <= 5; h++)
                    ADD(a->products[p].launches[c] + h * DAY);
        }
    }
    for (size_t i = 0; i < a->n_agreements; i++) {
        for (size_t k = 0; k < a->agreements[i].n_versions; k++) {
            const struct cmx_agr_version *ver = &a->agreements[i].versions[k];
            ADD(ver->effective);
            for (size_t j = 0; j < ver->n_licences; j++) {
                ADD(ver->licences[j].from);
                ADD(ver->licences[j].until + 1);
            }
            for (size_t j = 0; j < ver->n_opt_outs; j++)
                ADD(ver->opt_outs[j].since);
        }
    }
    for (int i = 0; i < 20 && n < cap; i++)
        v[n++] = INT64_C(1767225600000) - 10 * DAY + (int64_t)(next() % (120 * DAY));
#undef ADD
    return n;
}

static void check_matrix(const struct cmx_config *cfg, int64_t t)
{
    const struct cmx_agreements *a = cfg->agreements;
    struct cmx_buf b;
    struct json_object *o, *cells;

    cmx_buf_init(&b, 1 << 22);
    assert_int_equal(cmx_agreements_matrix_json(cfg, (uint64_t)t, &b), 0);
    o = json_tokener_parse(b.data);
    assert_non_null(o);
    assert_true(json_object_object_get_ex(o, "cells", &cells));
    assert_int_equal(json_object_array_length(cells), a->n_products * a->n_clouds);
    for (size_t i = 0; i < json_object_array_length(cells); i++) {
        struct json_object *cell = json_object_array_get_idx(cells, i), *v, *caps;
        json_object_object_get_ex(cell, "product", &v);
        size_t p = (size_t)cmx_agreements_product(a, json_object_get_string(v));
        json_object_object_get_ex(cell, "cloud", &v);
        size_t c = (size_t)cmx_agreements_cloud(a, json_object_get_string(v));
        assert_true(p < a->n_products && c < a->n_clouds);
        assert_true(json_object_object_get_ex(cell, "capabilities", &caps));
        unsigned declared = a->products[p].caps, n_denied = 0, n_caps = 0;
        for (unsigned k = 0; k < CMX_CAP_COUNT; k++) {
            if (!(declared & (1u << k)))
                continue;
            struct json_object *one, *reason;
            assert_true(json_object_object_get_ex(caps, cap_names[k], &one));
            json_object_object_get_ex(one, "reason", &reason);
            enum cmx_agr_reason want = oracle(a, p, c, 1u << k, t);
            const char *got = reason ? json_object_get_string(reason) : NULL;
            if (want == CMX_AGR_ALLOWED ? got != NULL
                                        : got == NULL || strcmp(got, cmx_agr_reason_name(want)))
                fail_msg("matrix cell %zu/%zu/%s: %s, oracle %s", p, c, cap_names[k],
                         got ? got : "allowed", cmx_agr_reason_name(want));
            n_denied += want != CMX_AGR_ALLOWED;
            n_caps++;
        }
        json_object_object_get_ex(cell, "decision", &v);
        const char *want = n_denied == 0 ? "allowed" : n_denied == n_caps ? "denied" : "partial";
        assert_string_equal(json_object_get_string(v), want);
    }
    json_object_put(o);
    cmx_buf_free(&b);
}

static void test_random_configs(void **state)
{
    int64_t tv[4096];
    size_t checked = 0;
    (void)state;

    for (unsigned iter = 0; iter < CONFIGS; iter++) {
        struct cmx_buf yaml;
        struct cmx_config *cfg = NULL;
        struct cmx_config_diag d;
        unsigned n_clouds;

        rng = UINT64_C(0x5eed) + iter * UINT64_C(1000003);
        cmx_buf_init(&yaml, 1 << 20);
        generate(&yaml, &n_clouds);
        cmx_config_diag_init(&d);
        int rc = cmx_config_load_string(yaml.data, yaml.len, "gen.yaml", &cfg, &d);
        if (rc != 0) {
            fprintf(stderr, "config %u does not load:\n%s\n%s", iter, yaml.data,
                    d.text.data ? d.text.data : "");
            fail();
        }
        cmx_config_diag_free(&d);
        const struct cmx_agreements *a = cfg->agreements;
        assert_non_null(a);
        assert_int_equal(a->n_clouds, n_clouds);

        size_t nt = times(a, tv, sizeof(tv) / sizeof(tv[0]));
        for (size_t ti = 0; ti < nt; ti++) {
            int64_t t = tv[ti];
            for (size_t p = 0; p < a->n_products; p++) {
                const struct cmx_model_cfg *m = &cfg->models[p];
                assert_int_equal(cmx_agreements_model_product(cfg, m), (int64_t)p);
                for (size_t c = 0; c < a->n_clouds; c++) {
                    unsigned caps = 0;
                    while (caps == 0)
                        caps = (unsigned)(next() % 32);
                    enum cmx_agr_reason want = oracle_caps(a, p, c, caps, t);
                    enum cmx_agr_reason got = cmx_agreements_reason(a, p, c, caps, t);
                    if (got != want) {
                        fprintf(stderr,
                                "config %u, product %zu, cloud %zu, caps %u, t %lld: lookup %s, "
                                "oracle %s\n%s",
                                iter, p, c, caps, (long long)t, cmx_agr_reason_name(got),
                                cmx_agr_reason_name(want), yaml.data);
                        fail();
                    }
                    /* the direct evaluation of the engine, capability by capability */
                    for (unsigned k = 0; k < CMX_CAP_COUNT; k++) {
                        struct cmx_agr_decision e;
                        cmx_agreements_evaluate(a, p, c, 1u << k, t, &e);
                        assert_int_equal(e.reason, oracle(a, p, c, 1u << k, t));
                    }
                    /* what routing does: the filter on the deployment on cloud c */
                    struct cmx_agreement_check chk = {
                        .cfg = cfg, .model = m, .caps = caps, .now_ms = (uint64_t)t};
                    const char *why = NULL;
                    bool ok = cmx_agreements_filter(&chk, &m->deployments[c], &why);
                    assert_int_equal(ok, want == CMX_AGR_ALLOWED);
                    if (!ok)
                        assert_string_equal(why, cmx_agr_reason_name(want));
                    /* the next change: constant until then, different at it */
                    struct cmx_agr_decision dd;
                    assert_int_equal(cmx_agreements_decide(a, p, c, caps, t, &dd), 0);
                    assert_int_equal(dd.reason, want);
                    if (dd.next_change != CMX_AGR_NEVER) {
                        struct cmx_agr_decision nd;
                        assert_true(dd.next_change > t);
                        assert_int_equal(oracle_caps(a, p, c, caps, dd.next_change - 1), want);
                        cmx_agreements_decide(a, p, c, caps, dd.next_change, &nd);
                        assert_true(nd.reason != dd.reason || nd.by != dd.by);
                    }
                    int64_t from = cmx_agreements_allowed_from(a, p, c, caps, t);
                    if (from != CMX_AGR_NEVER) {
                        assert_true(from >= t);
                        assert_int_equal(oracle_caps(a, p, c, caps, from), CMX_AGR_ALLOWED);
                        if (from > t)
                            assert_true(oracle_caps(a, p, c, caps, from - 1) != CMX_AGR_ALLOWED);
                    }
                    checked++;
                }
            }
            /* the ungoverned model is never filtered */
            const struct cmx_model_cfg *free_m = &cfg->models[a->n_products];
            struct cmx_agreement_check chk = {.cfg = cfg, .model = free_m, .now_ms = (uint64_t)t};
            const char *why = NULL;
            assert_true(cmx_agreements_filter(&chk, &free_m->deployments[0], &why));
            if (ti % 16 == 0)
                check_matrix(cfg, t);
        }
        cmx_config_unref(cfg);
        cmx_buf_free(&yaml);
    }
    print_message("%zu decisions checked over %d configs\n", checked, CONFIGS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_configs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
