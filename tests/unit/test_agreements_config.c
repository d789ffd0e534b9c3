/* Unit tests for the maker / products / agreements sections of the config loader
 * (src/config/config_agreements.c): every validation message with its line, the launch
 * order warning, defaults, and the example config. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agreements/agreements.h"
#include "config/config.h"
#include "core/clock.h"
#include "core/err.h"

static const char *diag_text(const struct cmx_config_diag *d)
{
    return d->text.data ? d->text.data : "";
}

/* Loads yaml as "t.yaml" and checks the return code and the complete diagnostics. */
static void expect(const char *yaml, int want_rc, const char *want_diag)
{
    struct cmx_config_diag d;
    struct cmx_config *cfg = NULL;
    cmx_config_diag_init(&d);
    int rc = cmx_config_load_string(yaml, strlen(yaml), "t.yaml", &cfg, &d);
    if (strcmp(diag_text(&d), want_diag) != 0)
        fail_msg("diagnostics differ.\n--- got:\n%s--- want:\n%s", diag_text(&d), want_diag);
    assert_int_equal(rc, want_rc);
    if (rc == 0)
        assert_non_null(cfg);
    else
        assert_null(cfg);
    cmx_config_unref(cfg);
    cmx_config_diag_free(&d);
}

/* Loads yaml, expects CMX_ECONFIG and the line want (without "t.yaml:") among the
 * diagnostics. */
static void expect_error(const char *yaml, const char *want)
{
    struct cmx_config_diag d;
    struct cmx_config *cfg = NULL;
    char line[1024];
    cmx_config_diag_init(&d);
    int rc = cmx_config_load_string(yaml, strlen(yaml), "t.yaml", &cfg, &d);
    snprintf(line, sizeof(line), "t.yaml:%s\n", want);
    if (strstr(diag_text(&d), line) == NULL)
        fail_msg("missing diagnostic:\n%s--- got:\n%s", line, diag_text(&d));
    assert_int_equal(rc, CMX_ECONFIG);
    assert_null(cfg);
    cmx_config_diag_free(&d);
}

static void test_every_error(void **state)
{
    (void)state;
    expect(
        "providers:\n"
        "  - { name: az, type: openai_compatible, cloud: azure, base_url: http://127.0.0.1:1 }\n"
        "models:\n"
        "  - name: m\n"
        "    product: gpt-7\n"
        "    deployments: [{ provider: az, model: x }]\n"
        "maker: openai\n"
        "products:\n"
        "  - name: gpt-5\n"
        "    capabilities: [chat, telepathy]\n"
        "    launches: { azure: 2026-02-30, aws: 2026-08-07, aws: 2026-08-08 }\n"
        "  - name: gpt-5\n"
        "  - name: \"bad name\"\n"
        "agreements:\n"
        "  - id: ms\n"
        "    versions:\n"
        "      - effective: 2026-01-01\n"
        "        primary_cloud: azure\n"
        "        licences:\n"
        "          - { licensee: azure, products: [gpt-5, gtp-5], until: 2030-12-31, exclusiv: "
        "true }\n"
        "          - { licensee: aws, products: \"*\", until: 2025-12-31 }\n"
        "        revenue_shares:\n"
        "          - { payee: ms, rate: 1.5, base: all, until: 2030-12-31 }\n"
        "          - { payee: ms, rate: abc, base: some, until: 2030-12-31, cap: lots }\n"
        "          - { payee: ms, rate: \"0.1\", base: { products: [nope] }, until: 2030-12-31, "
        "cap: \"-1\", currency: usd }\n"
        "      - effective: 2026-01-01\n"
        "        first_launch: { products: [gpt-5], opt_outs: [{ since: 2026-01-01 }, { product: "
        "nope }] }\n"
        "        licences:\n"
        "          - { licensee: aws, products: \"*\", until: 2030-12-31, trigger: gpt-6-launch }\n"
        "      - effective: 2026-01-01T00:00:00Z\n"
        "        when: ipo\n"
        "  - id: ms\n"
        "    versions: []\n"
        "  - id: x\n"
        "    versions:\n"
        "      - { effective: 2026-13-01 }\n",
        CMX_ECONFIG,
        "t.yaml:5: error: models[0].product: no product named \"gpt-7\" is defined (did you mean "
        "\"gpt-5\"?)\n"
        "t.yaml:10: error: products[0].capabilities[1]: \"telepathy\" is not a known capability "
        "(valid: chat, embeddings, tools, vision, audio)\n"
        "t.yaml:11: error: products[0].launches.azure must be a date YYYY-MM-DD or a UTC date-time "
        "YYYY-MM-DDTHH:MM:SSZ, got \"2026-02-30\"\n"
        "t.yaml:11: error: products[0].launches.aws: aws is given twice (first at line 11)\n"
        "t.yaml:12: error: duplicate product name \"gpt-5\" (first defined at line 9)\n"
        "t.yaml:13: error: product name \"bad name\" is invalid: use only letters, digits, '_', "
        "'.' and '-'\n"
        "t.yaml:18: warning: ms@2026-01-01: primary_cloud without first_launch has no effect (add "
        "first_launch: { products: core })\n"
        "t.yaml:20: error: unknown key \"exclusiv\" in licences[0] of versions[0] of agreement "
        "\"ms\" (did you mean \"exclusive\"?)\n"
        "t.yaml:20: error: agreements[0].versions[0].licences[0].products[1]: no product named "
        "\"gtp-5\" is defined (did you mean \"gpt-5\"?)\n"
        "t.yaml:21: error: ms@2026-01-01: licence of aws ends before it starts (effective "
        "2026-01-01)\n"
        "t.yaml:23: error: agreements[0].versions[0].revenue_shares[0].rate is outside [0, 1] "
        "(0.20 means 20%), got \"1.5\"\n"
        "t.yaml:24: error: agreements[0].versions[0].revenue_shares[1].rate must be a decimal rate "
        "between 0 and 1 (e.g. 0.20) with at most 6 fraction digits, got \"abc\"\n"
        "t.yaml:24: error: agreements[0].versions[0].revenue_shares[1].base must be all or a "
        "mapping { clouds: [...] } / { products: [...] }, got \"some\"\n"
        "t.yaml:24: error: agreements[0].versions[0].revenue_shares[1].cap must be a decimal "
        "amount >= 0 (e.g. \"1000000.00\") with at most 6 fraction digits, got \"lots\"\n"
        "t.yaml:25: error: agreements[0].versions[0].revenue_shares[2].cap must be a decimal "
        "amount >= 0 (e.g. \"1000000.00\") with at most 6 fraction digits, got \"-1\"\n"
        "t.yaml:25: error: agreements[0].versions[0].revenue_shares[2].currency must be an ISO "
        "4217 code such as USD, got \"usd\"\n"
        "t.yaml:25: error: agreements[0].versions[0].revenue_shares[2].base.products[0]: no "
        "product named \"nope\" is defined under products\n"
        "t.yaml:26: error: agreement \"ms\" has two versions effective 2026-01-01 (the other at "
        "line 17); give each amendment its own effective date\n"
        "t.yaml:27: error: agreements[0].versions[1].first_launch.opt_outs[0] must name a product, "
        "a capability, or both (e.g. { product: gpt-realtime } or { capability: audio })\n"
        "t.yaml:27: error: ms@2026-01-01: first_launch needs a primary_cloud in the same version\n"
        "t.yaml:27: error: agreements[0].versions[1].first_launch.opt_outs[1].product: no product "
        "named \"nope\" is defined under products\n"
        "t.yaml:29: error: agreements[0].versions[1].licences[0].trigger: terms depend on dates "
        "only; milestone triggers and other conditions are not supported (give the term an "
        "effective, from or until date, or add an amendment that takes effect on the date)\n"
        "t.yaml:30: error: agreement \"ms\" has two versions effective 2026-01-01 (the other at "
        "line 26); give each amendment its own effective date\n"
        "t.yaml:31: error: agreements[0].versions[2].when: terms depend on dates only; milestone "
        "triggers and other conditions are not supported (give the term an effective, from or "
        "until date, or add an amendment that takes effect on the date)\n"
        "t.yaml:32: error: duplicate agreement id \"ms\" (first defined at line 15)\n"
        "t.yaml:33: error: agreements[1].versions must list at least one version\n"
        "t.yaml:36: error: agreements[2].versions[0].effective must be a date YYYY-MM-DD or a UTC "
        "date-time YYYY-MM-DDTHH:MM:SSZ, got \"2026-13-01\"\n");
}

static void test_launch_order_warning(void **state)
{
    (void)state;
    expect("maker: openai\n"
           "products:\n"
           "  - name: gpt-6\n"
           "    core: true\n"
           "    launches: { azure: 2026-12-15, aws: 2026-12-01, gcp: 2026-12-17, openai: "
           "2026-12-01 }\n"
           "  - name: gpt-rt\n"
           "    core: true\n"
           "    launches: { aws: 2026-11-01 }\n"
           "  - name: gpt-x\n"
           "    core: true\n"
           "    launches: { aws: 2026-11-01, azure: 2026-10-01 }\n"
           "agreements:\n"
           "  - id: ms\n"
           "    versions:\n"
           "      - effective: 2026-10-28\n"
           "        primary_cloud: azure\n"
           "        first_launch: { products: core, holdback_days: 3, opt_outs: [{ product: gpt-x, "
           "since: 2026-12-01 }] }\n"
           "        licences: [{ licensee: azure, products: \"*\", until: 2030-12-31 }]\n"
           "  - id: aws\n"
           "    versions:\n"
           "      - effective: 2026-01-01\n"
           "        licences: [{ licensee: aws, products: \"*\", until: 2030-12-31 }]\n",
           0,
           "t.yaml:1: warning: no models are defined; every request will be refused\n"
           "t.yaml:5: warning: products[0].launches.aws: gpt-6 launches on aws on 2026-12-01, "
           "before first launch under ms@2026-10-28 lets it (primary cloud azure: 2026-12-15 + 3 "
           "days holdback); aws will serve it from 2026-12-18, not 2026-12-01\n"
           "t.yaml:5: warning: products[0].launches.gcp: gpt-6 launches on gcp on 2026-12-17, "
           "before first launch under ms@2026-10-28 lets it (primary cloud azure: 2026-12-15 + 3 "
           "days holdback); gcp will serve it from 2026-12-18, not 2026-12-17\n"
           "t.yaml:8: warning: products[1].launches.aws: gpt-rt launches on aws on 2026-11-01, "
           "before first launch under ms@2026-10-28 lets it (primary cloud azure: no launch date, "
           "3 days holdback); aws will not serve it under the current terms\n");
}

/* A product that no agreement names: only the maker may serve it, which is worth a warning
 * (a product licensed by "*" or bound only by first launch is named). */
static void test_product_in_no_agreement(void **state)
{
    (void)state;
    expect("maker: openai\n"
           "products:\n"
           "  - name: gpt-5\n"
           "    launches: { azure: 2026-08-07, openai: 2026-08-07 }\n"
           "  - name: orphan\n"
           "    launches: { openai: 2026-08-07 }\n"
           "  - name: core-only\n"
           "    core: true\n"
           "    launches: { azure: 2026-08-07 }\n"
           "agreements:\n"
           "  - id: ms\n"
           "    versions:\n"
           "      - effective: 2026-01-01\n"
           "        primary_cloud: azure\n"
           "        first_launch: { products: core }\n"
           "        licences: [{ licensee: azure, products: [gpt-5], until: 2030-12-31 }]\n",
           0,
           "t.yaml:1: warning: no models are defined; every request will be refused\n"
           "t.yaml:5: warning: products[1]: orphan is in no agreement (no licence covers it): "
           "only the maker's own cloud openai may serve it\n");
}

/* Two exclusive licences for different clouds over a common product at the same time shut
 * each other out: a warning with the overlap. The same cloud twice, disjoint terms, or an
 * amendment that replaces the first are fine. */
static void test_exclusive_overlap(void **state)
{
    (void)state;
    expect(
        "maker: openai\n"
        "products:\n"
        "  - { name: a, launches: { aws: 2027-01-01, azure: 2027-01-01 } }\n"
        "  - { name: b, launches: { aws: 2027-01-01, azure: 2027-01-01 } }\n"
        "agreements:\n"
        "  - id: amz\n"
        "    versions:\n"
        "      - effective: 2026-01-01\n"
        "        licences: [{ licensee: aws, products: [b], until: 2028-06-30, exclusive: true }]\n"
        "      - effective: 2028-01-01\n"
        "        licences: [{ licensee: aws, products: \"*\", until: 2030-12-31 }]\n"
        "  - id: ms\n"
        "    versions:\n"
        "      - effective: 2026-01-01\n"
        "        licences: [{ licensee: azure, products: \"*\", from: 2027-03-01, until: "
        "2030-12-31, exclusive: true }]\n"
        "  - id: ms2\n"
        "    versions:\n"
        "      - effective: 2026-01-01\n"
        "        licences: [{ licensee: azure, products: \"*\", until: 2030-12-31, exclusive: "
        "true }]\n",
        0,
        "t.yaml:1: warning: no models are defined; every request will be refused\n"
        "t.yaml:15: warning: exclusive licences of aws (amz@2026-01-01) and azure "
        "(ms@2026-01-01) overlap from 2027-03-01 through 2027-12-31 over b: each shuts the "
        "other out, so only the maker's own cloud may serve it then\n"
        "t.yaml:19: warning: exclusive licences of aws (amz@2026-01-01) and azure "
        "(ms2@2026-01-01) overlap from 2026-01-01 through 2027-12-31 over b: each shuts the "
        "other out, so only the maker's own cloud may serve it then\n");
}

/* Lines 1-3: a product; an agreement follows from line 4. */
#define PRODUCTS                                                                                   \
    "products:\n"                                                                                  \
    "  - name: gpt-5\n"                                                                            \
    "    launches: { azure: 2026-08-07 }\n"
#define AGREEMENT                                                                                  \
    "agreements:\n"                                                                                \
    "  - id: ms\n"                                                                                 \
    "    versions:\n"                                                                              \
    "      - effective: 2026-01-01\n"

static void test_small_errors(void **state)
{
    (void)state;
    /* until is a date (inclusive), not a date-time */
    expect_error(PRODUCTS AGREEMENT "        licences: [{ licensee: azure, products: \"*\", until: "
                                    "2030-12-31T00:00:00Z }]\n",
                 "8: error: agreements[0].versions[0].licences[0].until must be a date "
                 "YYYY-MM-DD (UTC), got \"2030-12-31T00:00:00Z\"");
    expect_error(PRODUCTS AGREEMENT
                 "        licences: [{ licensee: azure, products: { gpt-5: 1 }, until: "
                 "2030-12-31 }]\n",
                 "8: error: agreements[0].versions[0].licences[0].products must be \"*\" or a "
                 "list of product names");
    expect_error(PRODUCTS AGREEMENT "        licences: [{ licensee: azure, until: 2030-12-31 }]\n",
                 "8: error: missing required key \"products\" in licences[0] of versions[0] of "
                 "agreement \"ms\"");
    expect_error(PRODUCTS AGREEMENT "        licenses: []\n",
                 "8: error: unknown key \"licenses\" in versions[0] of agreement \"ms\" (did you "
                 "mean \"licences\"?)");
    /* condition keys anywhere in the terms */
    expect_error(PRODUCTS AGREEMENT "        primary_cloud: azure\n"
                                    "        first_launch: { condition: ipo }\n",
                 "9: error: agreements[0].versions[0].first_launch.condition: terms depend on "
                 "dates only; milestone triggers and other conditions are not supported (give "
                 "the term an effective, from or until date, or add an amendment that takes "
                 "effect on the date)");
    expect_error(PRODUCTS AGREEMENT "        primary_cloud: azure\n"
                                    "        first_launch:\n"
                                    "          opt_outs: [{ product: gpt-5, milestone: agi }]\n",
                 "10: error: agreements[0].versions[0].first_launch.opt_outs[0].milestone: terms "
                 "depend on dates only; milestone triggers and other conditions are not "
                 "supported (give the term an effective, from or until date, or add an "
                 "amendment that takes effect on the date)");
    expect_error(PRODUCTS AGREEMENT
                 "        revenue_shares: [{ payee: x, rate: 0.1, base: all, until: 2030-12-31,\n"
                 "                           triggers: [launch] }]\n",
                 "9: error: agreements[0].versions[0].revenue_shares[0].triggers: terms depend "
                 "on dates only; milestone triggers and other conditions are not supported (give "
                 "the term an effective, from or until date, or add an amendment that takes "
                 "effect on the date)");
    expect_error(PRODUCTS "agreements:\n"
                          "  - id: ms\n"
                          "    trigger: signed\n"
                          "    versions: [{ effective: 2026-01-01 }]\n",
                 "6: error: agreements[0].trigger: terms depend on dates only; milestone "
                 "triggers and other conditions are not supported (give the term an effective, "
                 "from or until date, or add an amendment that takes effect on the date)");
    /* opt-outs: capability names, at least one of product / capability */
    expect_error(PRODUCTS AGREEMENT
                 "        primary_cloud: azure\n"
                 "        first_launch: { opt_outs: [{ capability: [vision, smell] }] }\n",
                 "9: error: agreements[0].versions[0].first_launch.opt_outs[0].capability[1]: "
                 "\"smell\" is not a known capability (valid: chat, embeddings, tools, vision, "
                 "audio)");
    expect_error(PRODUCTS AGREEMENT "        primary_cloud: azure\n"
                                    "        first_launch: { opt_outs: [{}] }\n",
                 "9: error: agreements[0].versions[0].first_launch.opt_outs[0] must name a "
                 "product, a capability, or both (e.g. { product: gpt-realtime } or { capability: "
                 "audio })");
    expect_error(PRODUCTS AGREEMENT "        primary_cloud: azure\n"
                                    "        first_launch: { opt_outs: [{ product: [] }] }\n",
                 "9: error: agreements[0].versions[0].first_launch.opt_outs[0].product must name "
                 "at least one product");
    expect_error(PRODUCTS AGREEMENT
                 "        primary_cloud: azure\n"
                 "        first_launch: { opt_outs: [{ product: [gpt-5, nope] }] }\n",
                 "9: error: agreements[0].versions[0].first_launch.opt_outs[0].product[1]: no "
                 "product named \"nope\" is defined under products");
    expect_error(PRODUCTS AGREEMENT "        first_launch: { products: \"*\" }\n",
                 "8: error: ms@2026-01-01: first_launch needs a primary_cloud in the same "
                 "version");
    expect_error(PRODUCTS AGREEMENT
                 "        primary_cloud: azure\n"
                 "        first_launch: { products: [gpt-5, gpt-4], holdback_days: -1 }\n",
                 "9: error: agreements[0].versions[0].first_launch.holdback_days must be an "
                 "integer between 0 and 36500, got \"-1\"");
    expect_error(PRODUCTS AGREEMENT "        primary_cloud: azure\n"
                                    "        first_launch: { products: [gpt-5, gpt-4] }\n",
                 "9: error: agreements[0].versions[0].first_launch.products[1]: no product named "
                 "\"gpt-4\" is defined (did you mean \"gpt-5\"?)");
    /* revenue shares */
    expect_error(PRODUCTS AGREEMENT
                 "        revenue_shares: [{ payee: x, rate: 0.1, base: {}, until: 2030-12-31 }]\n",
                 "8: error: agreements[0].versions[0].revenue_shares[0].base must name clouds, "
                 "products, or both");
    expect_error(PRODUCTS AGREEMENT
                 "        revenue_shares: [{ payee: x, rate: 0.1234567, base: all, until: "
                 "2030-12-31 }]\n",
                 "8: error: agreements[0].versions[0].revenue_shares[0].rate must be a decimal "
                 "rate between 0 and 1 (e.g. 0.20) with at most 6 fraction digits, got "
                 "\"0.1234567\"");
    expect_error(PRODUCTS AGREEMENT
                 "        revenue_shares: [{ payee: x, rate: \"-0.1\", base: all, until: "
                 "2030-12-31 }]\n",
                 "8: error: agreements[0].versions[0].revenue_shares[0].rate is outside [0, 1] "
                 "(0.20 means 20%), got \"-0.1\"");
    expect_error(PRODUCTS AGREEMENT
                 "        revenue_shares: [{ payee: x, rate: 0.1, base: all, from: 2031-01-01, "
                 "until: 2030-12-31 }]\n",
                 "8: error: ms@2026-01-01: revenue share to \"x\" ends before it starts");
    expect_error(PRODUCTS AGREEMENT
                 "        revenue_shares: [{ payee: x, rate: 0.1, base: all, until: 2030-12-31, "
                 "cap: 1e6 }]\n",
                 "8: error: agreements[0].versions[0].revenue_shares[0].cap must be a decimal "
                 "amount >= 0 (e.g. \"1000000.00\") with at most 6 fraction digits, got \"1e6\"");
    /* models[].product needs a product */
    expect_error("models:\n"
                 "  - name: m\n"
                 "    product: gpt-5\n"
                 "    deployments: []\n",
                 "3: error: models[0].product: no product named \"gpt-5\" is defined under "
                 "products");
    /* sections of the wrong shape */
    expect_error("products: gpt-5\n",
                 "1: error: products must be a list of products (each item starting with \"- \")");
    expect_error(PRODUCTS "agreements: { id: x }\n",
                 "4: error: agreements must be a list of agreements (each item starting with \"- "
                 "\")");
    expect_error("products:\n  - name: p\n    launches: [azure]\n",
                 "3: error: products[0].launches must be a mapping of clouds to launch dates, "
                 "e.g. { azure: 2026-08-07, aws: 2026-09-01 }");
    expect_error("maker: [a, b]\n", "1: error: maker must be a single value, not a sequence");
}

static void test_values(void **state)
{
    static const char yaml[] =
        "maker: ${CMX_TEST_MAKER}\n"
        "products:\n"
        "  - name: p\n"
        "    launches: { azure: \"2026-08-07\", openai: '2026-08-07T12:30:00+02:00' }\n"
        "  - name: q\n"
        "    capabilities: audio\n"
        "agreements:\n"
        "  - id: a\n"
        "    versions:\n"
        "      - effective: ${CMX_TEST_DATE:-2026-03-01}\n"
        "        primary_cloud: azure\n"
        "        first_launch: { products: q, opt_outs: [{ capability: audio, since: "
        "2026-03-02T00:00:00Z }] }\n"
        "        licences:\n"
        "          - { licensee: aws, products: [p], from: 2026-03-05T06:00:00Z, until: "
        "2026-03-31 }\n"
        "          - { licensee: gcp, products: p, until: 2026-03-31 }\n"
        "        revenue_shares:\n"
        "          - { payee: x, rate: 1, base: { clouds: newcloud }, until: 2026-03-31 }\n"
        "          - { payee: y, rate: 0, base: { products: [q] }, until: 2026-03-31, cap: 0 }\n";
    struct cmx_config_diag d;
    struct cmx_config *cfg = NULL;
    (void)state;

    setenv("CMX_TEST_MAKER", "openai", 1);
    unsetenv("CMX_TEST_DATE");
    cmx_config_diag_init(&d);
    assert_int_equal(cmx_config_load_string(yaml, strlen(yaml), "t.yaml", &cfg, &d), 0);
    assert_string_equal(
        diag_text(&d), "t.yaml:1: warning: no models are defined; every request will be refused\n");
    const struct cmx_agreements *a = cfg->agreements;
    assert_string_equal(a->maker, "openai");
    /* every cloud label: launches, maker, primary, licensees, revenue-share bases */
    assert_int_equal(a->n_clouds, 5);
    assert_string_equal(a->clouds[0], "aws");
    assert_string_equal(a->clouds[1], "azure");
    assert_string_equal(a->clouds[2], "gcp");
    assert_string_equal(a->clouds[3], "newcloud");
    assert_string_equal(a->clouds[4], "openai");
    assert_int_equal(a->maker_cloud, 4);
    int64_t ms;
    cmx_clock_parse_iso("2026-08-07T10:30:00Z", 20, &ms, NULL);
    assert_int_equal(a->products[0].launches[4], ms);
    assert_int_equal(a->products[0].caps, CMX_CAP_CHAT); /* default */
    assert_int_equal(a->products[1].caps, CMX_CAP_AUDIO);
    assert_false(a->products[0].core);
    const struct cmx_agr_version *v = &a->agreements[0].versions[0];
    assert_string_equal(v->label, "a@2026-03-01");
    assert_int_equal(v->first_launch.kind, CMX_AGR_SCOPE_LIST);
    assert_int_equal(v->first_launch.n_products, 1);
    assert_int_equal(v->holdback_days, 0);
    assert_int_equal(v->opt_outs[0].product, -1);
    assert_int_equal(v->opt_outs[0].caps, CMX_CAP_AUDIO);
    assert_int_equal(v->licences[0].scope.n_products, 1);
    assert_false(v->licences[0].exclusive);
    assert_int_equal(v->licences[1].scope.kind, CMX_AGR_SCOPE_LIST);
    assert_int_equal(v->licences[1].from, v->effective);
    assert_int_equal(v->shares[0].rate_ppm, 1000000);
    assert_int_equal(v->shares[0].n_clouds, 1);
    assert_int_equal(v->shares[1].rate_ppm, 0);
    assert_true(v->shares[1].has_cap);
    assert_int_equal(v->shares[1].cap_micros, 0);
    cmx_config_unref(cfg);
    cmx_config_diag_free(&d);

    /* The expanded date, and a date-time effective gets a date-time label. */
    setenv("CMX_TEST_DATE", "2026-03-01T08:00:00Z", 1);
    cmx_config_diag_init(&d);
    assert_int_equal(cmx_config_load_string(yaml, strlen(yaml), "t.yaml", &cfg, &d), 0);
    assert_string_equal(cfg->agreements->agreements[0].versions[0].label, "a@2026-03-01T08:00:00Z");
    cmx_config_unref(cfg);
    cmx_config_diag_free(&d);
    unsetenv("CMX_TEST_DATE");
    unsetenv("CMX_TEST_MAKER");
}

static void test_warnings(void **state)
{
    (void)state;
    /* products but no agreements: only the maker may serve */
    expect("maker: openai\n"
           "products:\n"
           "  - name: p\n",
           0,
           "t.yaml:1: warning: no models are defined; every request will be refused\n"
           "t.yaml:3: warning: products are defined but no agreements: only the maker's own "
           "cloud openai may serve them\n");
    /* a governed deployment on a cloud no agreement ever licenses */
    expect("providers:\n"
           "  - { name: x, type: openai_compatible, cloud: onprem, base_url: http://h:1 }\n"
           "models:\n"
           "  - name: p\n"
           "    deployments: [{ provider: x, model: m }]\n"
           "products:\n"
           "  - name: p\n"
           "agreements: []\n",
           0,
           "t.yaml:5: warning: model \"p\" (product p) has a deployment on cloud onprem, which "
           "no agreement licenses for it: that deployment will never serve\n");
}

static void test_example(void **state)
{
    struct cmx_config_diag d;
    struct cmx_config *cfg = NULL;
    (void)state;

    cmx_config_diag_init(&d);
    assert_int_equal(cmx_config_load("examples/partnership.yaml", &cfg, &d), 0);
    assert_string_equal(diag_text(&d), "");
    assert_non_null(cfg->agreements);
    assert_int_equal(cfg->agreements->n_products, 4);
    assert_int_equal(cfg->agreements->n_agreements, 3);
    assert_string_equal(cfg->models[3].product, "text-embedding-4");
    assert_null(cfg->models[4].product);
    cmx_config_unref(cfg);
    cmx_config_diag_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_error),  cmocka_unit_test(test_launch_order_warning),
        cmocka_unit_test(test_small_errors), cmocka_unit_test(test_product_in_no_agreement),
        cmocka_unit_test(test_values),       cmocka_unit_test(test_warnings),
        cmocka_unit_test(test_example),      cmocka_unit_test(test_exclusive_overlap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
