/* Unit tests for tenants: the config section (values, defaults, errors and warnings with
 * their lines), model globs, the cloud/region filter, preference ranks in the router, and
 * the 403 explanation. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "config/config.h"
#include "core/buf.h"
#include "core/err.h"
#include "router/router.h"
#include "tenants/tenants.h"

#define PROVIDERS                                                                                  \
    "providers:\n"                                                                                 \
    "  - { name: aws-use1, type: openai_compatible, cloud: aws, region: us-east-1,\n"              \
    "      base_url: http://127.0.0.1:1/v1 }\n"                                                    \
    "  - { name: aws-usw2, type: openai_compatible, cloud: aws, region: us-west-2,\n"              \
    "      base_url: http://127.0.0.1:2/v1 }\n"                                                    \
    "  - { name: azure-eastus, type: openai_compatible, cloud: azure, region: eastus,\n"           \
    "      base_url: http://127.0.0.1:3/v1 }\n"                                                    \
    "  - { name: gcp-east, type: openai_compatible, cloud: gcp, region: us-east4,\n"               \
    "      base_url: http://127.0.0.1:4/v1 }\n"                                                    \
    "  - { name: openai, type: openai_compatible, cloud: openai, base_url: http://127.0.0.1:5/v1 " \
    "}\n"                                                                                          \
    "models:\n"                                                                                    \
    "  - name: gpt-5\n"                                                                            \
    "    deployments:\n"                                                                           \
    "      - { provider: azure-eastus, model: gpt-5, priority: 1 }\n"                              \
    "      - { provider: openai, model: gpt-5, priority: 2 }\n"                                    \
    "      - { provider: gcp-east, model: gpt-5, priority: 3 }\n"                                  \
    "      - { provider: aws-usw2, model: gpt-5, priority: 4 }\n"                                  \
    "      - { provider: aws-use1, model: gpt-5, priority: 5 }\n"                                  \
    "  - name: claude-4\n"                                                                         \
    "    deployments: [{ provider: aws-use1, model: claude }]\n"                                   \
    "  - name: llama\n"                                                                            \
    "    deployments: [{ provider: gcp-east, model: llama }]\n"

static struct cmx_config *load_ok(const char *yaml, const char *want_diag)
{
    struct cmx_config_diag d;
    struct cmx_config *cfg = NULL;
    cmx_config_diag_init(&d);
    int rc = cmx_config_load_string(yaml, strlen(yaml), "t.yaml", &cfg, &d);
    const char *text = d.text.data ? d.text.data : "";
    if (rc != 0 || strcmp(text, want_diag) != 0)
        fail_msg("rc %d, diagnostics:\n%s--- want:\n%s", rc, text, want_diag);
    cmx_config_diag_free(&d);
    return cfg;
}

static void load_error(const char *yaml, const char *want_line)
{
    struct cmx_config_diag d;
    struct cmx_config *cfg = NULL;
    cmx_config_diag_init(&d);
    int rc = cmx_config_load_string(yaml, strlen(yaml), "t.yaml", &cfg, &d);
    const char *text = d.text.data ? d.text.data : "";
    if (rc != CMX_ECONFIG || strstr(text, want_line) == NULL)
        fail_msg("rc %d, diagnostics:\n%s--- want a line:\n%s", rc, text, want_line);
    assert_null(cfg);
    cmx_config_diag_free(&d);
}

static const char ACME[] =
    PROVIDERS "tenants:\n"                              /* line 23 */
              "  - name: acme\n"                        /* 26 */
              "    preferred_clouds: [aws]\n"           /* 25 */
              "    allowed_clouds: [aws, azure]\n"      /* 26 */
              "    regions: [us-east-1, eastus]\n"      /* 25 */
              "    models: [\"gpt-*\", \"claude-*\"]\n" /* 26 */
              "    budget: { amount: \"5000.00\", currency: USD, period: month }\n"
              "    limits: { rpm: 600, tpm: 200000 }\n"
              "  - name: open\n";

static void test_config_values(void **state)
{
    (void)state;
    struct cmx_config *cfg = load_ok(ACME, "");
    assert_int_equal(cfg->n_tenants, 2);
    const struct cmx_tenant_cfg *t = cmx_config_find_tenant(cfg, "acme");
    assert_non_null(t);
    assert_int_equal(t->n_preferred_clouds, 1);
    assert_string_equal(t->preferred_clouds[0], "aws");
    assert_int_equal(t->n_allowed_clouds, 2);
    assert_string_equal(t->allowed_clouds[1], "azure");
    assert_int_equal(t->n_regions, 2);
    assert_int_equal(t->n_models, 2);
    assert_string_equal(t->models[1], "claude-*");
    assert_int_equal(t->budget_micros, 5000000000LL);
    assert_string_equal(t->budget_currency, "USD");
    assert_string_equal(t->budget_period, "month");
    assert_int_equal(t->rpm, 600);
    assert_int_equal(t->tpm, 200000);
    assert_int_equal(t->line, 24);
    const struct cmx_tenant_cfg *o = cmx_config_find_tenant(cfg, "open");
    assert_non_null(o);
    assert_int_equal(o->n_allowed_clouds + o->n_regions + o->n_models, 0);
    assert_int_equal(o->budget_micros, -1);
    assert_int_equal(o->rpm + o->tpm, 0);
    assert_null(cmx_config_find_tenant(cfg, "nobody"));
    assert_null(cfg->auth);
    cmx_config_unref(cfg);

    /* a single scalar is a list of one; budget defaults: USD, month */
    cfg = load_ok(PROVIDERS "auth: none\ntenants:\n  - name: t\n    allowed_clouds: gcp\n"
                            "    budget: { amount: 10 }\n",
                  "");
    assert_string_equal(cfg->auth, "none");
    assert_int_equal(cfg->tenants[0].n_allowed_clouds, 1);
    assert_string_equal(cfg->tenants[0].allowed_clouds[0], "gcp");
    assert_string_equal(cfg->tenants[0].budget_currency, "USD");
    assert_string_equal(cfg->tenants[0].budget_period, "month");
    assert_int_equal(cfg->tenants[0].budget_micros, 10000000);
    cmx_config_unref(cfg);
}

static void test_config_errors(void **state)
{
    (void)state;
    load_error(PROVIDERS "tenants:\n  - name: a\n    preferred_clouds: [gcp]\n"
                         "    allowed_clouds: [aws]\n",
               "t.yaml:24: error: tenant \"a\": preferred cloud \"gcp\" is not in its "
               "allowed_clouds\n");
    load_error(PROVIDERS "tenants:\n  - name: a\n  - name: a\n",
               "t.yaml:25: error: tenant \"a\" is defined twice (first at line 24)\n");
    load_error(PROVIDERS "tenants:\n  - name: a\n    budget: { amount: \"-5\" }\n", "t.yaml:25:");
    load_error(PROVIDERS "tenants:\n  - name: a\n    budget: { amount: 5, currency: dollars }\n",
               "t.yaml:25: error: tenants[0].budget.currency must be a three-letter ISO 4217 "
               "code such as USD\n");
    load_error(PROVIDERS "tenants:\n  - name: a\n    budget: { amount: 5, period: year }\n",
               "t.yaml:25:");
    load_error(PROVIDERS "tenants:\n  - name: a\n    limits: { rpm: 0 }\n", "t.yaml:25:");
    load_error(PROVIDERS "tenants:\n  - name: a\n    colour: blue\n", "unknown key \"colour\"");
    load_error(PROVIDERS "tenants:\n  - name: a\n    regions: { a: b }\n",
               "t.yaml:25: error: tenants[0].regions must be a list of regions");
    load_error(PROVIDERS "tenants:\n  - name: \"a b\"\n", "tenant name is invalid");
    load_error(PROVIDERS "auth: maybe\n", "t.yaml:23: error: auth must be one of: none, keys");

    /* typos that would exclude everything are warnings, with the tenant's line */
    struct cmx_config *cfg =
        load_ok(PROVIDERS "tenants:\n  - name: w\n    allowed_clouds: [asw]\n"
                          "    regions: [us-east-9]\n    models: [\"gtp-*\"]\n",
                "t.yaml:24: warning: tenant \"w\": allowed cloud \"asw\" is not the cloud of "
                "any provider\n"
                "t.yaml:24: warning: tenant \"w\": region \"us-east-9\" is not the region of any "
                "provider\n"
                "t.yaml:24: warning: tenant \"w\": models entry \"gtp-*\" matches no model\n");
    cmx_config_unref(cfg);
}

static const struct cmx_deployment_cfg *dep_of(const struct cmx_config *cfg, const char *model,
                                               const char *provider)
{
    const struct cmx_model_cfg *m = cmx_config_find_model(cfg, model, strlen(model));
    for (size_t i = 0; m != NULL && i < m->n_deployments; i++)
        if (strcmp(m->deployments[i].provider->name, provider) == 0)
            return &m->deployments[i];
    fail_msg("no deployment %s/%s", model, provider);
    return NULL;
}

static void test_rules(void **state)
{
    (void)state;
    struct cmx_config *cfg = load_ok(ACME, "");
    const struct cmx_tenant_cfg *t = cmx_config_find_tenant(cfg, "acme");
    const struct cmx_tenant_cfg *o = cmx_config_find_tenant(cfg, "open");
    const char *why = NULL;

    assert_true(cmx_tenant_model_allowed(t, "gpt-5"));
    assert_true(cmx_tenant_model_allowed(t, "claude-4"));
    assert_false(cmx_tenant_model_allowed(t, "llama"));
    assert_false(cmx_tenant_model_allowed(t, "gpt"));
    assert_true(cmx_tenant_model_allowed(o, "llama"));
    assert_true(cmx_tenant_model_allowed(NULL, "llama"));

    assert_true(cmx_tenant_filter((void *)t, dep_of(cfg, "gpt-5", "aws-use1"), &why));
    assert_true(cmx_tenant_filter((void *)t, dep_of(cfg, "gpt-5", "azure-eastus"), &why));
    assert_false(cmx_tenant_filter((void *)t, dep_of(cfg, "gpt-5", "gcp-east"), &why));
    assert_string_equal(why, "cloud_not_allowed");
    assert_false(cmx_tenant_filter((void *)t, dep_of(cfg, "gpt-5", "aws-usw2"), &why));
    assert_string_equal(why, "region_not_allowed");
    /* no region on the provider: residency cannot be shown */
    assert_false(cmx_tenant_filter((void *)t, dep_of(cfg, "gpt-5", "openai"), &why));
    assert_string_equal(why, "cloud_not_allowed");
    assert_true(cmx_tenant_filter((void *)o, dep_of(cfg, "gpt-5", "openai"), &why));

    assert_int_equal(cmx_tenant_cloud_rank(t, dep_of(cfg, "gpt-5", "aws-use1")), 0);
    assert_int_equal(cmx_tenant_cloud_rank(t, dep_of(cfg, "gpt-5", "azure-eastus")), 1);
    assert_int_equal(cmx_tenant_cloud_rank(o, dep_of(cfg, "gpt-5", "azure-eastus")), 0);

    /* the router: filter first, then preferred clouds ahead of the priority order */
    assert_int_equal(cmx_router_attach(cfg), 0);
    struct cmx_route_input in = {
        .cfg = cfg,
        .model = cmx_config_find_model(cfg, "gpt-5", 5),
        .filters = {cmx_tenant_filter},
        .filter_ud = {(void *)t},
        .rank = cmx_tenant_cloud_rank,
        .rank_ud = t,
    };
    struct cmx_route r;
    char *bad = NULL;
    assert_int_equal(cmx_router_plan(&in, &r, &bad), 0);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.order[0]->provider->name, "aws-use1");     /* preferred, priority 5 */
    assert_string_equal(r.order[1]->provider->name, "azure-eastus"); /* priority 1 */
    assert_int_equal(r.n_excluded, 3);

    struct cmx_buf b;
    cmx_buf_init(&b, 4096);
    assert_int_equal(cmx_tenant_denial(t, r.excluded, r.n_excluded, &b), 0);
    assert_string_equal(b.data, "tenant acme excludes openai (cloud openai is not in "
                                "allowed_clouds), gcp-east (cloud gcp is not in allowed_clouds), "
                                "aws-usw2 (region us-west-2 is not in regions)");
    cmx_buf_reset(&b);
    assert_int_equal(cmx_tenant_denial(o, r.excluded, r.n_excluded, &b), CMX_ENOTFOUND);
    assert_int_equal(b.len, 0);
    cmx_buf_free(&b);

    /* without the tenant: plain priority order over all five */
    struct cmx_route_input plain = {.cfg = cfg, .model = in.model};
    assert_int_equal(cmx_router_plan(&plain, &r, &bad), 0);
    assert_int_equal(r.n, 5);
    assert_string_equal(r.order[0]->provider->name, "azure-eastus");
    cmx_config_unref(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_values),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
