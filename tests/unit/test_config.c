/* Unit tests for src/config/: loading, validation messages (with exact lines), ${VAR}
 * expansion, lookups, refcount, and the `check` subcommand. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "config/config.h"
#include "core/buf.h"
#include "core/err.h"

/* ---- helpers ----------------------------------------------------------------------- */

/* Loads yaml as "t.yaml"; the caller frees *d (and *cfg). */
static int load(const char *yaml, struct cmx_config **cfg, struct cmx_config_diag *d)
{
    cmx_config_diag_init(d);
    return cmx_config_load_string(yaml, strlen(yaml), "t.yaml", cfg, d);
}

static const char *diag_text(const struct cmx_config_diag *d)
{
    return d->text.data ? d->text.data : "";
}

/* Loads yaml and checks the return code and the complete diagnostics text. */
static void expect(const char *yaml, int want_rc, const char *want_diag)
{
    struct cmx_config_diag d;
    struct cmx_config *cfg = (struct cmx_config *)1;
    int rc = load(yaml, &cfg, &d);
    if (strcmp(diag_text(&d), want_diag) != 0)
        fail_msg("diagnostics differ.\n--- got:\n%s--- want:\n%s", diag_text(&d), want_diag);
    assert_int_equal(rc, want_rc);
    if (rc != 0)
        assert_null(cfg);
    else
        assert_non_null(cfg);
    cmx_config_unref(cfg);
    cmx_config_diag_free(&d);
}

/* Loads yaml, expects CMX_ECONFIG and the one error line want (without "t.yaml:" and
 * the newline) among the diagnostics. */
static void expect_error(const char *yaml, const char *want)
{
    struct cmx_config_diag d;
    struct cmx_config *cfg = NULL;
    char line[1024];
    int rc = load(yaml, &cfg, &d);
    snprintf(line, sizeof(line), "t.yaml:%s\n", want);
    if (strstr(diag_text(&d), line) == NULL)
        fail_msg("missing diagnostic:\n%s--- got:\n%s", line, diag_text(&d));
    assert_int_equal(rc, CMX_ECONFIG);
    assert_null(cfg);
    cmx_config_diag_free(&d);
}

/* A provider and a model using it: lines 1-5 and 6-10. */
#define PROV                                                                                       \
    "providers:\n"                                                                                 \
    "  - name: p\n"                                                                                \
    "    type: openai_compatible\n"                                                                \
    "    cloud: onprem\n"                                                                          \
    "    base_url: http://127.0.0.1:8000\n"
#define MODEL                                                                                      \
    "models:\n"                                                                                    \
    "  - name: m\n"                                                                                \
    "    deployments:\n"                                                                           \
    "      - provider: p\n"                                                                        \
    "        model: up\n"

/* ---- a complete configuration ------------------------------------------------------ */

static const char full_yaml[] =
    "listen: \"[::1]:9090\"\n"                                                 /* 1 */
    "workers: 2\n"                                                             /* 2 */
    "server:\n"                                                                /* 3 */
    "  max_body_bytes: 512KiB\n"                                               /* 4 */
    "  max_header_bytes: 32768\n"                                              /* 5 */
    "  header_timeout_ms: 1000\n"                                              /* 6 */
    "  body_timeout_ms: 2000\n"                                                /* 7 */
    "  keepalive_timeout_ms: 3000\n"                                           /* 8 */
    "  drain_timeout_s: 4\n"                                                   /* 9 */
    "  access_log: false\n"                                                    /* 10 */
    "providers:\n"                                                             /* 11 */
    "  - name: azure-eastus\n"                                                 /* 12 */
    "    type: azure_openai\n"                                                 /* 13 */
    "    cloud: azure\n"                                                       /* 14 */
    "    region: eastus\n"                                                     /* 15 */
    "    base_url: https://myres.openai.azure.com/\n"                          /* 16 */
    "    api_key: ${CMX_TEST_AZURE_KEY}\n"                                     /* 17 */
    "    api_version: 2024-10-21\n"                                            /* 18 */
    "    tls: { ca_file: /path/ca.pem }\n"                                     /* 19 */
    "    timeouts: { connect_ms: 1000, first_byte_ms: 5000, idle_ms: 3000 }\n" /* 20 */
    "  - name: openai\n"                                                       /* 21 */
    "    type: openai\n"                                                       /* 22 */
    "    cloud: openai\n"                                                      /* 23 */
    "    base_url: https://api.openai.com/v1\n"                                /* 24 */
    "    api_key: sk-literal\n"                                                /* 25 */
    "  - name: local-vllm\n"                                                   /* 26 */
    "    type: openai_compatible\n"                                            /* 27 */
    "    cloud: onprem\n"                                                      /* 28 */
    "    base_url: http://10.0.0.5:8000/v1//\n"                                /* 29 */
    "models:\n"                                                                /* 30 */
    "  - name: gpt-4o\n"                                                       /* 31 */
    "    routing: { strategy: weighted }\n"                                    /* 32 */
    "    deployments:\n"                                                       /* 33 */
    "      - provider: azure-eastus\n"                                         /* 34 */
    "        model: gpt4o-prod\n"                                              /* 35 */
    "        priority: 1\n"                                                    /* 36 */
    "        weight: 3\n"                                                      /* 37 */
    "        price: { input_per_mtok: 2.50, output_per_mtok: 10.00, "
    "cached_input_per_mtok: 1.25 }\n"                   /* 38 */
    "      - provider: openai\n"                        /* 39 */
    "        model: gpt-4o\n"                           /* 40 */
    "        priority: 2\n"                             /* 41 */
    "        weight: 0\n"                               /* 42 */
    "        price:\n"                                  /* 43 */
    "          input_per_mtok: 0.075\n"                 /* 44 */
    "          output_per_mtok: \"1000000.00\"\n"       /* 45 */
    "  - name: llama\n"                                 /* 46 */
    "    deployments:\n"                                /* 47 */
    "      - provider: local-vllm\n"                    /* 48 */
    "        model: meta-llama/Llama-3.1-8B-Instruct\n" /* 49 */
    "routing:\n"                                        /* 50 */
    "  strategy: lowest_price\n"                        /* 51 */
    "  max_attempts: 5\n"                               /* 52 */
    "  timeout_s: 60\n"                                 /* 53 */
    "  connect_timeout_ms: 100\n"                       /* 54 */
    "  first_byte_timeout_ms: 200\n"                    /* 55 */
    "  idle_timeout_ms: 300\n";                         /* 56 */

static void test_full(void **state)
{
    struct cmx_config_diag d;
    struct cmx_config *cfg = NULL;
    (void)state;

    setenv("CMX_TEST_AZURE_KEY", "azure-secret", 1);
    assert_int_equal(load(full_yaml, &cfg, &d), 0);
    assert_string_equal(diag_text(&d), "");
    assert_int_equal(d.errors, 0);
    assert_int_equal(d.warnings, 0);
    assert_non_null(cfg);

    assert_string_equal(cfg->path, "t.yaml");
    assert_string_equal(cfg->listen_host, "::1");
    assert_int_equal(cfg->listen_port, 9090);
    assert_int_equal(cfg->workers, 2);

    assert_int_equal(cfg->server.max_body_bytes, 512 * 1024);
    assert_int_equal(cfg->server.max_header_bytes, 32768);
    assert_int_equal(cfg->server.header_timeout_ms, 1000);
    assert_int_equal(cfg->server.body_timeout_ms, 2000);
    assert_int_equal(cfg->server.keepalive_timeout_ms, 3000);
    assert_int_equal(cfg->server.drain_timeout_s, 4);
    assert_false(cfg->server.access_log);

    assert_int_equal(cfg->n_providers, 3);
    const struct cmx_provider_cfg *az = &cfg->providers[0];
    assert_string_equal(az->name, "azure-eastus");
    assert_int_equal(az->type, CMX_PROVIDER_AZURE_OPENAI);
    assert_string_equal(az->cloud, "azure");
    assert_string_equal(az->region, "eastus");
    assert_string_equal(az->base_url, "https://myres.openai.azure.com");
    assert_string_equal(az->api_key, "azure-secret");
    assert_string_equal(az->api_version, "2024-10-21"); /* text, not a YAML date */
    assert_string_equal(az->ca_file, "/path/ca.pem");
    assert_int_equal(az->connect_timeout_ms, 1000);
    assert_int_equal(az->first_byte_timeout_ms, 5000);
    assert_int_equal(az->idle_timeout_ms, 3000);
    assert_int_equal(az->line, 12);

    const struct cmx_provider_cfg *oa = &cfg->providers[1];
    assert_string_equal(oa->name, "openai");
    assert_int_equal(oa->type, CMX_PROVIDER_OPENAI);
    assert_null(oa->region);
    assert_string_equal(oa->base_url, "https://api.openai.com/v1");
    assert_string_equal(oa->api_key, "sk-literal");
    assert_null(oa->api_version);
    assert_null(oa->ca_file);
    assert_int_equal(oa->connect_timeout_ms, 0);
    assert_int_equal(oa->first_byte_timeout_ms, 0);
    assert_int_equal(oa->idle_timeout_ms, 0);
    assert_int_equal(oa->line, 21);

    const struct cmx_provider_cfg *lv = &cfg->providers[2];
    assert_int_equal(lv->type, CMX_PROVIDER_OPENAI_COMPATIBLE);
    assert_null(lv->api_key);
    assert_string_equal(lv->base_url, "http://10.0.0.5:8000/v1");

    assert_int_equal(cfg->n_models, 2);
    const struct cmx_model_cfg *m = &cfg->models[0];
    assert_string_equal(m->name, "gpt-4o");
    assert_string_equal(m->strategy, "weighted");
    assert_int_equal(m->line, 31);
    assert_int_equal(m->n_deployments, 2);
    const struct cmx_deployment_cfg *d0 = &m->deployments[0];
    assert_ptr_equal(d0->provider, az);
    assert_string_equal(d0->model, "gpt4o-prod");
    assert_int_equal(d0->priority, 1);
    assert_int_equal(d0->weight, 3);
    assert_true(d0->has_price);
    assert_int_equal(d0->price.input_per_mtok, 2500000);
    assert_int_equal(d0->price.output_per_mtok, 10000000);
    assert_int_equal(d0->price.cached_input_per_mtok, 1250000);
    assert_int_equal(d0->line, 34);
    const struct cmx_deployment_cfg *d1 = &m->deployments[1];
    assert_ptr_equal(d1->provider, oa);
    assert_int_equal(d1->priority, 2);
    assert_int_equal(d1->weight, 0);
    assert_true(d1->has_price);
    assert_int_equal(d1->price.input_per_mtok, 75000);
    assert_int_equal(d1->price.output_per_mtok, INT64_C(1000000000000));
    assert_int_equal(d1->price.cached_input_per_mtok, -1);

    const struct cmx_model_cfg *ll = &cfg->models[1];
    assert_string_equal(ll->name, "llama");
    assert_null(ll->strategy);
    assert_int_equal(ll->n_deployments, 1);
    assert_ptr_equal(ll->deployments[0].provider, lv);
    assert_string_equal(ll->deployments[0].model, "meta-llama/Llama-3.1-8B-Instruct");
    assert_int_equal(ll->deployments[0].priority, 1);
    assert_int_equal(ll->deployments[0].weight, 1);
    assert_false(ll->deployments[0].has_price);

    assert_string_equal(cfg->routing.strategy, "lowest_price");
    assert_int_equal(cfg->routing.max_attempts, 5);
    assert_int_equal(cfg->routing.timeout_s, 60);
    assert_int_equal(cfg->routing.connect_timeout_ms, 100);
    assert_int_equal(cfg->routing.first_byte_timeout_ms, 200);
    assert_int_equal(cfg->routing.idle_timeout_ms, 300);

    cmx_config_unref(cfg);
    cmx_config_diag_free(&d);
    unsetenv("CMX_TEST_AZURE_KEY");
}

static void test_defaults(void **state)
{
    struct cmx_config_diag d;
    struct cmx_config *cfg = NULL;
    (void)state;

    assert_int_equal(load(PROV MODEL, &cfg, &d), 0);
    assert_string_equal(diag_text(&d), "");
    assert_string_equal(cfg->listen_host, "127.0.0.1");
    assert_int_equal(cfg->listen_port, 8080);
    assert_int_equal(cfg->workers, 0);
    assert_int_equal(cfg->server.max_body_bytes, 10485760);
    assert_int_equal(cfg->server.max_header_bytes, 65536);
    assert_int_equal(cfg->server.header_timeout_ms, 30000);
    assert_int_equal(cfg->server.body_timeout_ms, 60000);
    assert_int_equal(cfg->server.keepalive_timeout_ms, 75000);
    assert_int_equal(cfg->server.drain_timeout_s, 30);
    assert_true(cfg->server.access_log);
    assert_string_equal(cfg->routing.strategy, "priority");
    assert_int_equal(cfg->routing.max_attempts, 3);
    assert_int_equal(cfg->routing.timeout_s, 600);
    assert_int_equal(cfg->routing.connect_timeout_ms, 10000);
    assert_int_equal(cfg->routing.first_byte_timeout_ms, 600000);
    assert_int_equal(cfg->routing.idle_timeout_ms, 120000);
    const struct cmx_deployment_cfg *dep = &cfg->models[0].deployments[0];
    assert_int_equal(dep->priority, 1);
    assert_int_equal(dep->weight, 1);
    assert_false(dep->has_price);
    assert_null(cfg->models[0].strategy);
    assert_null(cfg->providers[0].region);
    assert_null(cfg->providers[0].api_key);
    cmx_config_unref(cfg);
    cmx_config_diag_free(&d);

    /* Empty sections read as absent. */
    expect("server:\nrouting: ~\n" PROV MODEL, 0, "");
}

static void test_sizes_and_bools(void **state)
{
    static const struct {
        const char *text;
        size_t want;
    } sizes[] = {
        {"10485760", 10485760}, {"10MiB", 10485760}, {"512KiB", 524288}, {"1MB", 1000000},
        {"1kB", 1000},          {"64k", 65536},      {"2 MiB", 2097152}, {"1GiB", 1073741824},
        {"100B", 100},          {"3m", 3145728},     {"\"7KIB\"", 7168},
    };
    static const struct {
        const char *text;
        bool want;
    } bools[] = {{"true", true}, {"false", false}, {"yes", true},
                 {"no", false},  {"on", true},     {"off", false}};
    char yaml[512];
    (void)state;

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        struct cmx_config_diag d;
        struct cmx_config *cfg = NULL;
        snprintf(yaml, sizeof(yaml), "server: { max_body_bytes: %s }\n" PROV MODEL, sizes[i].text);
        if (load(yaml, &cfg, &d) != 0)
            fail_msg("%s: %s", sizes[i].text, diag_text(&d));
        assert_int_equal(cfg->server.max_body_bytes, sizes[i].want);
        cmx_config_unref(cfg);
        cmx_config_diag_free(&d);
    }
    for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++) {
        struct cmx_config_diag d;
        struct cmx_config *cfg = NULL;
        snprintf(yaml, sizeof(yaml), "server: { access_log: %s }\n" PROV MODEL, bools[i].text);
        assert_int_equal(load(yaml, &cfg, &d), 0);
        assert_int_equal(cfg->server.access_log, bools[i].want);
        cmx_config_unref(cfg);
        cmx_config_diag_free(&d);
    }
    expect_error("server:\n  max_body_bytes: 1.5MiB\n",
                 "2: error: server.max_body_bytes must be a size in bytes (e.g. 65536, 512KiB, "
                 "10MiB) >= 1, got \"1.5MiB\"");
    expect_error("server:\n  max_header_bytes: 0\n",
                 "2: error: server.max_header_bytes must be a size in bytes (e.g. 65536, 512KiB, "
                 "10MiB) >= 1, got \"0\"");
    expect_error("server:\n  max_body_bytes: 10TB\n",
                 "2: error: server.max_body_bytes must be a size in bytes (e.g. 65536, 512KiB, "
                 "10MiB) >= 1, got \"10TB\"");
    expect_error("server:\n  max_body_bytes: 99999999999999999999\n",
                 "2: error: server.max_body_bytes must be a size in bytes (e.g. 65536, 512KiB, "
                 "10MiB) >= 1, got \"99999999999999999999\"");
    expect_error("server:\n  access_log: 1\n",
                 "2: error: server.access_log must be true or false, got \"1\"");
}

/* ---- environment expansion --------------------------------------------------------- */

static void test_env_expansion(void **state)
{
    struct cmx_config_diag d;
    struct cmx_config *cfg = NULL;
    (void)state;

    setenv("CMX_TEST_HOST", "10.1.2.3", 1);
    setenv("CMX_TEST_PORT", "8443", 1);
    setenv("CMX_TEST_EMPTY", "", 1);
    unsetenv("CMX_TEST_UNSET");
    const char *yaml = "providers:\n"
                       "  - name: p\n"
                       "    type: openai_compatible\n"
                       "    cloud: ${CMX_TEST_UNSET:-onprem}\n"
                       "    region: ${CMX_TEST_EMPTY:-fallback}\n"
                       "    base_url: https://${CMX_TEST_HOST}:${CMX_TEST_PORT}/v1\n"
                       "    api_key: a$${literal}b$c$$d${CMX_TEST_EMPTY}e\n"
                       "    api_version: ${CMX_TEST_UNSET:-}\n"
                       "models:\n"
                       "  - name: ${CMX_TEST_UNSET:-m-${x}}\n"
                       "    deployments:\n"
                       "      - { provider: p, model: \"${CMX_TEST_EMPTY}up\" }\n";
    int rc = load(yaml, &cfg, &d);
    if (rc != 0)
        fail_msg("%s", diag_text(&d));
    const struct cmx_provider_cfg *p = &cfg->providers[0];
    assert_string_equal(p->cloud, "onprem");
    assert_string_equal(p->region, "fallback"); /* :- also covers empty */
    assert_string_equal(p->base_url, "https://10.1.2.3:8443/v1");
    assert_string_equal(p->api_key, "a${literal}b$c$$de"); /* $${ is a literal ${ */
    assert_null(p->api_version);                           /* empty default = absent... */
    /* The default ends at the first '}'; the second one is literal text. */
    assert_string_equal(cfg->models[0].name, "m-${x}");
    assert_string_equal(cfg->models[0].deployments[0].model, "up");
    cmx_config_unref(cfg);
    cmx_config_diag_free(&d);
    /* ...so api_version with an empty expansion is accepted even on a non-azure type. */

    unsetenv("CMX_TEST_HOST");
    unsetenv("CMX_TEST_PORT");
    unsetenv("CMX_TEST_EMPTY");
}

static void test_env_errors(void **state)
{
    (void)state;
    unsetenv("AZURE_OPENAI_API_KEY_CMX_TEST");
    unsetenv("CMX_TEST_B");
    expect("providers:\n"
           "  - name: azure\n"
           "    type: azure_openai\n"
           "    cloud: azure\n"
           "    base_url: https://x.openai.azure.com\n"
           "    api_key: ${AZURE_OPENAI_API_KEY_CMX_TEST}\n"
           "models:\n"
           "  - name: m\n"
           "    deployments:\n"
           "      - provider: azure\n"
           "        model: ${CMX_TEST_B}-${CMX_TEST_B:-x}-${CMX_TEST_B}\n",
           CMX_ECONFIG,
           "t.yaml:6: error: environment variable AZURE_OPENAI_API_KEY_CMX_TEST is not set "
           "(providers[0].api_key)\n"
           "t.yaml:11: error: environment variable CMX_TEST_B is not set "
           "(models[0].deployments[0].model)\n"
           "t.yaml:11: error: environment variable CMX_TEST_B is not set "
           "(models[0].deployments[0].model)\n");
    expect_error("listen: ${CMX_TEST_B\n",
                 "1: error: unterminated \"${\" in listen (write \"$${\" for a literal)");
    expect_error("listen: ${1BAD}:80\n",
                 "1: error: invalid variable reference \"${1BAD}\" in listen (expected ${NAME} or "
                 "${NAME:-default}; write \"$${\" for a literal)");
    expect_error("listen: ${}\n",
                 "1: error: invalid variable reference \"${}\" in listen (expected ${NAME} or "
                 "${NAME:-default}; write \"$${\" for a literal)");
    expect_error("listen: ${A-B}\n",
                 "1: error: invalid variable reference \"${A-B}\" in listen (expected ${NAME} or "
                 "${NAME:-default}; write \"$${\" for a literal)");
}

/* A value from the environment is never printed, even when it is the invalid part. */
static void test_env_secret_not_printed(void **state)
{
    struct cmx_config_diag d;
    struct cmx_config *cfg = NULL;
    (void)state;

    setenv("CMX_TEST_SECRET_URL", "ftp://hunter2@example.com", 1);
    setenv("CMX_TEST_SECRET_KEY", "sk-hunter2\nX-Injected: 1", 1);
    setenv("CMX_TEST_SECRET_N", "hunter2", 1);
    const char *yaml = "workers: ${CMX_TEST_SECRET_N}\n"
                       "providers:\n"
                       "  - name: p\n"
                       "    type: openai\n"
                       "    cloud: c\n"
                       "    base_url: ${CMX_TEST_SECRET_URL}\n"
                       "    api_key: ${CMX_TEST_SECRET_KEY}\n"
                       "models:\n"
                       "  - name: m\n"
                       "    deployments: [ { provider: \"${CMX_TEST_SECRET_N}\", model: x } ]\n";
    assert_int_equal(load(yaml, &cfg, &d), CMX_ECONFIG);
    assert_null(strstr(diag_text(&d), "hunter2"));
    assert_string_equal(diag_text(&d),
                        "t.yaml:1: error: workers must be an integer between 0 and 1024, got "
                        "\"${CMX_TEST_SECRET_N}\"\n"
                        "t.yaml:3: warning: provider \"p\" is not used by any model deployment\n"
                        "t.yaml:6: error: providers[0].base_url is not a valid URL: must start "
                        "with http:// or https://, got \"${CMX_TEST_SECRET_URL}\"\n"
                        "t.yaml:7: error: providers[0].api_key must not contain control "
                        "characters or line breaks\n"
                        "t.yaml:10: error: models[0].deployments[0].provider: no provider named "
                        "\"${CMX_TEST_SECRET_N}\" is defined\n");
    cmx_config_diag_free(&d);
    /* A literal api_key is not quoted either. */
    expect_error("providers:\n  - name: p\n    type: openai\n    cloud: c\n"
                 "    base_url: http://h\n    api_key: \"sk-lit\\teral\"\n",
                 "6: error: providers[0].api_key must not contain control characters or line "
                 "breaks");
    unsetenv("CMX_TEST_SECRET_URL");
    unsetenv("CMX_TEST_SECRET_KEY");
    unsetenv("CMX_TEST_SECRET_N");
}

/* ---- validation -------------------------------------------------------------------- */

static void test_unknown_keys(void **state)
{
    (void)state;
    expect("lisen: 127.0.0.1:80\n"                             /* 1 */
           "providers:\n"                                      /* 2 */
           "  - name: x\n"                                     /* 3 */
           "    type: openai_compatible\n"                     /* 4 */
           "    cloud: c\n"                                    /* 5 */
           "    base_ur: https://x\n"                          /* 6 */
           "    tls: { cafile: a }\n"                          /* 7 */
           "    timeouts:\n"                                   /* 8 */
           "      conect_ms: 1\n"                              /* 9 */
           "      bogus: 2\n"                                  /* 10 */
           "server: { max_body: 1 }\n"                         /* 11 */
           "models:\n"                                         /* 12 */
           "  - name: m\n"                                     /* 13 */
           "    routing: { stratgey: x }\n"                    /* 14 */
           "    deployment:\n"                                 /* 15 */
           "      - provider: x\n"                             /* 16 */
           "    deployments:\n"                                /* 17 */
           "      - provider: x\n"                             /* 18 */
           "        model: y\n"                                /* 19 */
           "        proirity: 1\n"                             /* 20 */
           "        price: { input: 1, output_per_mtok: 2 }\n" /* 21 */
           "routing:\n"                                        /* 22 */
           "  max_attempt: 2\n"                                /* 23 */
           "Routing: {}\n",                                    /* 24 */
           CMX_ECONFIG,
           "t.yaml:1: error: unknown key \"lisen\" at the top level (did you mean \"listen\"?)\n"
           "t.yaml:3: error: missing required key \"base_url\" in provider \"x\"\n"
           "t.yaml:6: error: unknown key \"base_ur\" in provider \"x\" (did you mean "
           "\"base_url\"?)\n"
           "t.yaml:7: error: unknown key \"cafile\" in \"tls\" of provider \"x\" (did you mean "
           "\"ca_file\"?)\n"
           "t.yaml:9: error: unknown key \"conect_ms\" in \"timeouts\" of provider \"x\" (did you "
           "mean \"connect_ms\"?)\n"
           "t.yaml:10: error: unknown key \"bogus\" in \"timeouts\" of provider \"x\"\n"
           "t.yaml:11: error: unknown key \"max_body\" in \"server\"\n"
           "t.yaml:14: error: unknown key \"stratgey\" in \"routing\" of model \"m\" (did you "
           "mean \"strategy\"?)\n"
           "t.yaml:15: error: unknown key \"deployment\" in model \"m\" (did you mean "
           "\"deployments\"?)\n"
           "t.yaml:20: error: unknown key \"proirity\" in deployments[0] of model \"m\" (did you "
           "mean \"priority\"?)\n"
           "t.yaml:21: error: unknown key \"input\" in \"price\" of deployments[0] of model \"m\"\n"
           "t.yaml:21: error: missing required key \"input_per_mtok\" in \"price\" of "
           "deployments[0] of model \"m\"\n"
           "t.yaml:23: error: unknown key \"max_attempt\" in \"routing\" (did you mean "
           "\"max_attempts\"?)\n"
           "t.yaml:24: error: unknown key \"Routing\" at the top level (did you mean "
           "\"routing\"?)\n");
}

static void test_type_errors(void **state)
{
    (void)state;
    expect_error("workers: two\n",
                 "1: error: workers must be an integer between 0 and 1024, got \"two\"");
    expect_error("workers: -3\n",
                 "1: error: workers must be an integer between 0 and 1024, got \"-3\"");
    expect_error("workers: 1.0\n",
                 "1: error: workers must be an integer between 0 and 1024, got \"1.0\"");
    expect_error("workers: +1\n",
                 "1: error: workers must be an integer between 0 and 1024, got \"+1\"");
    expect_error("workers: [1]\n", "1: error: workers must be a single value, not a sequence");
    expect_error("routing:\n  max_attempts: 0\n",
                 "2: error: routing.max_attempts must be an integer between 1 and 100, got \"0\"");
    expect_error("routing:\n  timeout_s: 99999999999\n",
                 "2: error: routing.timeout_s must be an integer >= 1, got \"99999999999\"");
    expect_error("routing:\n  idle_timeout_ms: -1\n",
                 "2: error: routing.idle_timeout_ms must be an integer >= 1, got \"-1\"");
    expect_error("routing:\n  strategy: fastest\n",
                 "2: error: routing.strategy must be one of: priority, weighted, least_latency, "
                 "lowest_price, got \"fastest\"");
    expect_error("routing: [a]\n",
                 "1: error: routing must be a mapping of keys to values, not a sequence");
    expect_error("server: 5\n", "1: error: server must be a mapping of keys to values");
    expect_error("providers: {a: 1}\n",
                 "1: error: providers must be a list of providers (each item starting with "
                 "\"- \")");
    expect_error("providers:\n  - just-a-name\n",
                 "2: error: providers[0] must be a mapping of keys to values");
    expect_error(PROV "    timeouts: { idle_ms: -5 }\n",
                 "6: error: providers[0].timeouts.idle_ms must be an integer >= 0, got \"-5\"");
    expect_error(PROV "models:\n  - name: m\n    deployments:\n      - provider: p\n"
                      "        model: x\n        weight: -1\n",
                 "11: error: models[0].deployments[0].weight must be an integer between 0 and "
                 "1000000, got \"-1\"");
    expect_error(PROV "models:\n  - name: m\n    deployments:\n      - provider: p\n"
                      "        model: x\n        priority: high\n",
                 "11: error: models[0].deployments[0].priority must be an integer >= 0, got "
                 "\"high\"");
    expect_error(PROV "models:\n  - name: m\n    deployments: x\n",
                 "8: error: models[0].deployments must be a list of deployments (each item "
                 "starting with \"- \")");
    expect_error(PROV "models:\n  - name: m\n    deployments: []\n",
                 "8: error: models[0].deployments must list at least one deployment");
    expect_error(PROV "models:\n  - name: \"\"\n    deployments: []\n",
                 "7: error: models[0].name must not be empty");
    expect_error("? [a, b]\n: 1\n",
                 "1: error: keys must be plain words, not a sequence (at the top level)");
}

static void test_providers(void **state)
{
    (void)state;
    /* Missing required keys: reported at the entry's line. */
    expect("providers:\n"              /* 1 */
           "  - name: a\n"             /* 2 */
           "    region: r\n"           /* 3 */
           "  - type: openai\n"        /* 4 */
           "    cloud: c\n"            /* 5 */
           "    base_url: http://h\n", /* 6 */
           CMX_ECONFIG,
           "t.yaml:2: error: missing required key \"type\" in provider \"a\"\n"
           "t.yaml:2: error: missing required key \"cloud\" in provider \"a\"\n"
           "t.yaml:2: error: missing required key \"base_url\" in provider \"a\"\n"
           "t.yaml:2: warning: provider \"a\" is not used by any model deployment\n"
           "t.yaml:4: error: missing required key \"name\" in providers[1]\n"
           "t.yaml:4: error: missing required key \"api_key\" in providers[1] (required for "
           "type openai)\n");
    /* Unknown type, with the list of valid ones. */
    expect_error("providers:\n  - name: a\n    type: sagemaker\n",
                 "3: error: providers[0].type is not a known provider type (valid: openai, "
                 "azure_openai, openai_compatible, bedrock, anthropic, vertex), got \"sagemaker\"");
    /* api_key required for azure_openai too, and must not be empty. */
    expect_error("providers:\n  - name: a\n    type: azure_openai\n    cloud: c\n"
                 "    base_url: http://h\n",
                 "2: error: missing required key \"api_key\" in provider \"a\" (required for "
                 "type azure_openai)");
    expect_error("providers:\n  - name: a\n    type: openai\n    cloud: c\n"
                 "    base_url: http://h\n    api_key: \"\"\n",
                 "6: error: providers[0].api_key must not be empty (required for type openai)");
    /* api_version only on azure_openai. */
    expect_error("providers:\n  - name: a\n    type: openai\n    cloud: c\n"
                 "    base_url: http://h\n    api_key: k\n    api_version: 2024-10-21\n",
                 "7: error: providers[0].api_version is only valid for type azure_openai "
                 "(provider \"a\" is openai)");
    /* Provider names. */
    expect_error("providers:\n  - name: a b\n    type: openai_compatible\n    cloud: c\n"
                 "    base_url: http://h\n",
                 "2: error: provider name \"a b\" is invalid: use only letters, digits, '_', '.' "
                 "and '-'");
    /* Duplicate provider names: at the second name, pointing at the first entry. */
    expect(PROV "  - name: q\n"
                "    type: openai_compatible\n"
                "    cloud: c\n"
                "    base_url: http://h\n"
                "  - cloud: c\n"
                "    name: p\n"
                "    type: openai_compatible\n"
                "    base_url: http://h\n" MODEL,
           CMX_ECONFIG,
           "t.yaml:6: warning: provider \"q\" is not used by any model deployment\n"
           "t.yaml:11: error: duplicate provider name \"p\" (first defined at line 2)\n");
}

static void test_urls(void **state)
{
    static const struct {
        const char *in, *out;
    } good[] = {
        {"http://h", "http://h"},
        {"https://h.example.com/", "https://h.example.com"},
        {"https://h:8443/v1/", "https://h:8443/v1"},
        {"http://[::1]:8000/v1", "http://[::1]:8000/v1"},
        {"http://[fe80::1]", "http://[fe80::1]"},
        {"HTTPS://H", "HTTPS://H"},
        {"http://10.0.0.1:80/a/b//", "http://10.0.0.1:80/a/b"},
        {"http://my_host.local", "http://my_host.local"},
    };
    static const struct {
        const char *in, *why;
    } bad[] = {
        {"ftp://h", "must start with http:// or https://"},
        {"h.example.com", "must start with http:// or https://"},
        {"http://", "missing host"},
        {"http:///v1", "missing host"},
        {"http://h:0", "port must be a number between 1 and 65535"},
        {"http://h:65536", "port must be a number between 1 and 65535"},
        {"http://h:", "port must be a number between 1 and 65535"},
        {"http://h:x", "port must be a number between 1 and 65535"},
        {"http://h h", "must not contain spaces or control characters"},
        {"http://h/?a=1", "must not contain a query (?) or fragment (#)"},
        {"http://u:p@h", "must not contain user credentials (put the key in api_key)"},
        {"http://[::1", "missing ']' after the IPv6 address"},
        {"http://[zz]:80", "invalid IPv6 address"},
        {"http://::1:80", "IPv6 addresses must be written in brackets, e.g. [::1]:8080"},
        {"http://h!x", "invalid host name"},
    };
    char yaml[512], want[512];
    (void)state;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct cmx_config_diag d;
        struct cmx_config *cfg = NULL;
        snprintf(yaml, sizeof(yaml),
                 "providers:\n  - name: p\n    type: openai_compatible\n    cloud: c\n"
                 "    base_url: \"%s\"\n" MODEL,
                 good[i].in);
        if (load(yaml, &cfg, &d) != 0)
            fail_msg("%s: %s", good[i].in, diag_text(&d));
        assert_string_equal(cfg->providers[0].base_url, good[i].out);
        cmx_config_unref(cfg);
        cmx_config_diag_free(&d);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(yaml, sizeof(yaml),
                 "providers:\n  - name: p\n    type: openai_compatible\n    cloud: c\n"
                 "    base_url: \"%s\"\n",
                 bad[i].in);
        snprintf(want, sizeof(want),
                 "5: error: providers[0].base_url is not a valid URL: %s, got \"%s\"", bad[i].why,
                 bad[i].in);
        expect_error(yaml, want);
    }
}

static void test_listen(void **state)
{
    static const struct {
        const char *in, *host;
        int port;
    } good[] = {
        {"127.0.0.1:8080", "127.0.0.1", 8080},   {"0.0.0.0:80", "0.0.0.0", 80},
        {"\"[::1]:8080\"", "::1", 8080},         {"\"[::]:1\"", "::", 1},
        {"localhost:65535", "localhost", 65535},
    };
    static const struct {
        const char *in, *why;
    } bad[] = {
        {"localhost", "missing :port"},
        {"8080", "missing :port"},
        {":8080", "missing host"},
        {"h:0", "port must be a number between 1 and 65535"},
        {"h:65536", "port must be a number between 1 and 65535"},
        {"h:80x", "port must be a number between 1 and 65535"},
        {"::1:8080", "IPv6 addresses must be written in brackets, e.g. [::1]:8080"},
        {"[::1]", "missing :port"},
        {"[::1]8080", "unexpected text after ']'"},
        {"[nope]:80", "invalid IPv6 address"},
        {"a b:80", "invalid host name"},
    };
    char yaml[512], want[512];
    (void)state;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct cmx_config_diag d;
        struct cmx_config *cfg = NULL;
        snprintf(yaml, sizeof(yaml), "listen: %s\n" PROV MODEL, good[i].in);
        if (load(yaml, &cfg, &d) != 0)
            fail_msg("%s: %s", good[i].in, diag_text(&d));
        assert_string_equal(cfg->listen_host, good[i].host);
        assert_int_equal(cfg->listen_port, good[i].port);
        cmx_config_unref(cfg);
        cmx_config_diag_free(&d);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(yaml, sizeof(yaml), "listen: \"%s\"\n", bad[i].in);
        snprintf(want, sizeof(want),
                 "1: error: listen must be host:port (e.g. 127.0.0.1:8080, 0.0.0.0:8080 or "
                 "[::1]:8080): %s, got \"%s\"",
                 bad[i].why, bad[i].in);
        expect_error(yaml, want);
    }
}

static void test_prices(void **state)
{
    static const char *const bad[] = {"1.0000001",      "-1",  "1e3", "abc", "1,5", ".5", "+1",
                                      "1000000.000001", "\"\""};
    char yaml[512], want[512];
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(yaml, sizeof(yaml),
                 PROV "models:\n  - name: m\n    deployments:\n      - provider: p\n"
                      "        model: x\n        price:\n          input_per_mtok: %s\n"
                      "          output_per_mtok: 1\n",
                 bad[i]);
        snprintf(want, sizeof(want),
                 "12: error: models[0].deployments[0].price.input_per_mtok must be a decimal "
                 "number between 0 and 1000000 with at most 6 fraction digits, got \"%s\"",
                 strcmp(bad[i], "\"\"") == 0 ? "" : bad[i]);
        expect_error(yaml, want);
    }
    /* Trailing zeros beyond 6 digits are fine; the price block needs input and output. */
    expect(PROV "models:\n  - name: m\n    deployments:\n      - provider: p\n"
                "        model: x\n        price: { input_per_mtok: 1.0000000, "
                "output_per_mtok: 0 }\n",
           0, "");
    expect(PROV "models:\n  - name: m\n    deployments:\n      - provider: p\n"
                "        model: x\n        price: { cached_input_per_mtok: 1 }\n",
           CMX_ECONFIG,
           "t.yaml:11: error: missing required key \"input_per_mtok\" in \"price\" of "
           "deployments[0] of model \"m\"\n"
           "t.yaml:11: error: missing required key \"output_per_mtok\" in \"price\" of "
           "deployments[0] of model \"m\"\n");
}

static void test_models(void **state)
{
    (void)state;
    /* Undefined provider (with a suggestion), duplicate model names, missing keys. */
    expect(PROV "  - name: openai\n" /* 6 */
                "    type: openai_compatible\n"
                "    cloud: c\n"
                "    base_url: http://h\n"
                "models:\n"     /* 10 */
                "  - name: m\n" /* 11 */
                "    deployments:\n"
                "      - provider: opnai\n" /* 13 */
                "        model: a\n"
                "      - provider: nothere\n" /* 15 */
                "        model: b\n"
                "      - provider: p\n" /* 17 */
                "  - name: n\n"         /* 18 */
                "    deployments: [ { provider: p, model: z } ]\n"
                "  - name: m\n" /* 20 */
                "    deployments: [ { provider: p, model: z } ]\n",
           CMX_ECONFIG,
           "t.yaml:6: warning: provider \"openai\" is not used by any model deployment\n"
           "t.yaml:13: error: models[0].deployments[0].provider: no provider named \"opnai\" "
           "(did you mean \"openai\"?)\n"
           "t.yaml:15: error: models[0].deployments[1].provider: no provider named \"nothere\" "
           "is defined\n"
           "t.yaml:17: error: missing required key \"model\" in deployments[2] of model \"m\"\n"
           "t.yaml:20: error: duplicate model name \"m\" (first defined at line 11)\n");
    /* models may come before providers in the file. */
    expect(MODEL PROV, 0, "");
    /* Per-model strategy. */
    expect_error(PROV "models:\n  - name: m\n    routing: { strategy: random }\n"
                      "    deployments: [ { provider: p, model: z } ]\n",
                 "8: error: models[0].routing.strategy must be one of: priority, weighted, "
                 "least_latency, lowest_price, got \"random\"");
}

static void test_yaml_errors(void **state)
{
    char path[] = "/tmp/cmx_test_stderr_XXXXXX";
    int fd = mkstemp(path);
    int saved;
    (void)state;

    /* Nothing from libfyaml may reach stderr: capture it during the loads. */
    assert_true(fd >= 0);
    fflush(stderr);
    saved = dup(2);
    dup2(fd, 2);

    expect("listen: 127.0.0.1:80\nworkers: [1,\n", CMX_ECONFIG,
           "t.yaml:3: error: YAML syntax error: did not find expected node content\n");
    expect("server:\n  a: 1\n b: 2\n", CMX_ECONFIG,
           "t.yaml:3: error: YAML syntax error: invalid indentation in mapping\n");
    expect("listen: \"abc\n", CMX_ECONFIG,
           "t.yaml:1: error: YAML syntax error: double-quoted scalar without closing quote\n");
    expect("", CMX_ECONFIG, "t.yaml:1: error: the configuration is empty\n");
    expect("# only a comment\n", CMX_ECONFIG, "t.yaml:1: error: the configuration is empty\n");
    expect("---\n", CMX_ECONFIG, "t.yaml:1: error: the configuration is empty\n");
    expect("- a\n- b\n", CMX_ECONFIG,
           "t.yaml:1: error: the configuration must be a mapping, not a sequence\n");
    expect("just text\n", CMX_ECONFIG,
           "t.yaml:1: error: the configuration must be a mapping of keys to values\n");
    expect(PROV MODEL "---\nworkers: 1\n", CMX_ECONFIG,
           "t.yaml:12: error: a second YAML document (after \"---\"); only one is allowed\n");
    expect("workers: 1\nworkers: 2\n", CMX_ECONFIG,
           "t.yaml:2: error: duplicate key \"workers\" at the top level (first given at line "
           "1)\n");
    expect("listen: \"a\\0b:80\"\n", CMX_ECONFIG,
           "t.yaml:1: error: listen contains a NUL character\n");
    /* Not UTF-8 text: rejected before libfyaml, which loops for ever on some of it. */
    expect("%\xe3", CMX_ECONFIG,
           "t.yaml:1: error: invalid UTF-8 (byte 0xe3 at column 2); the configuration must be "
           "UTF-8 text\n");
    expect("workers: 1\nlisten: \"\xc3\xa9\xc0\x80\"\n", CMX_ECONFIG,
           "t.yaml:2: error: invalid UTF-8 (byte 0xc0 at column 11); the configuration must be "
           "UTF-8 text\n");
    expect("workers: 1\n\nlisten: \x01\n", CMX_ECONFIG,
           "t.yaml:3: error: control character 0x01 at column 9\n");
    {
        static const char nul[] = "workers: 1\0\n";
        struct cmx_config_diag d;
        struct cmx_config *cfg = NULL;
        cmx_config_diag_init(&d);
        assert_int_equal(cmx_config_load_string(nul, sizeof(nul) - 1, "t.yaml", &cfg, &d),
                         CMX_ECONFIG);
        assert_string_equal(diag_text(&d),
                            "t.yaml:1: error: control character 0x00 at column 11\n");
        cmx_config_diag_free(&d);
    }
    /* Tabs only on comment lines ("? e:\t-" crashes libfyaml 0.7.12). */
    expect("? e:\t-", CMX_ECONFIG,
           "t.yaml:1: error: tab character at column 5: indent and separate with spaces (write "
           "\\t inside double quotes for a tab in a value)\n");
    expect("workers: 1\nserver:\n\tmax_body_bytes: 1\n", CMX_ECONFIG,
           "t.yaml:3: error: tab character at column 1: indent and separate with spaces (write "
           "\\t inside double quotes for a tab in a value)\n");
    expect("# a\ttabbed comment\n  #\tindented one\n" PROV MODEL, 0, "");
    /* A UTF-8 byte order mark and CRLF line ends are fine. */
    expect("\xef\xbb\xbfworkers: 1\r\n" PROV MODEL, 0, "");

    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    off_t size = lseek(fd, 0, SEEK_END);
    close(fd);
    unlink(path);
    assert_int_equal(size, 0);
}

/* Single-quoted scalars are decoded by the loader (libfyaml 0.7.12 leaks on some). */
static void test_single_quoted(void **state)
{
    struct cmx_config_diag d;
    struct cmx_config *cfg = NULL;
    (void)state;

    const char *yaml = "providers:\n"
                       "  - name: 'p'\n"
                       "    type: 'openai_compatible'\n"
                       "    cloud: 'it''s ''''''''''''''''''''''quoted'''\n"
                       "    region: 'folded \n      line  '\n"
                       "    base_url: 'http://h'\n"
                       "    'api_key': ''\n"
                       "models:\n"
                       "  - { name: 'm', deployments: [ { provider: 'p', model: 'x' } ] }\n";
    assert_int_equal(load(yaml, &cfg, &d), 0);
    assert_string_equal(cfg->providers[0].name, "p");
    assert_string_equal(cfg->providers[0].cloud, "it's '''''''''''quoted'");
    assert_string_equal(cfg->providers[0].region, "folded line  ");
    assert_null(cfg->providers[0].api_key);
    cmx_config_unref(cfg);
    cmx_config_diag_free(&d);

    expect_error("workers: 'a\n\n  b'\n",
                 "1: error: workers must be an integer between 0 and 1024, got \"a?b\"");
    expect_error("workers: ''''''''''''''''''''''\n",
                 "1: error: workers must be an integer between 0 and 1024, got \"''''''''''\"");
}

static void test_aliases(void **state)
{
    struct cmx_config_diag d;
    struct cmx_config *cfg = NULL;
    (void)state;

    /* Anchors and aliases are followed. */
    const char *yaml = PROV "models:\n"
                            "  - name: a\n"
                            "    deployments:\n"
                            "      - provider: p\n"
                            "        model: x\n"
                            "        price: &std { input_per_mtok: 1, output_per_mtok: 2 }\n"
                            "  - name: b\n"
                            "    deployments:\n"
                            "      - { provider: p, model: y, price: *std }\n";
    assert_int_equal(load(yaml, &cfg, &d), 0);
    assert_int_equal(cfg->models[1].deployments[0].price.output_per_mtok, 2000000);
    cmx_config_unref(cfg);
    cmx_config_diag_free(&d);

    expect_error("routing: *nope\n", "1: error: undefined YAML alias \"*nope\"");
    /* A self-referencing alias does not loop. */
    expect_error("providers: &l [ *l ]\n",
                 "1: error: providers[0] must be a mapping of keys to values, not a sequence");
}

/* An alias bomb is cut by the node budget instead of running for ever. */
static void test_alias_budget(void **state)
{
    struct cmx_buf b;
    struct cmx_config_diag d;
    struct cmx_config *cfg = NULL;
    (void)state;

    cmx_config_diag_init(&d);
    cmx_buf_init(&b, 1 << 22);
    cmx_buf_puts(&b, PROV "models:\n  - &m\n    name: a\n    deployments: [");
    for (int i = 0; i < 3000; i++)
        cmx_buf_printf(&b, "%s{provider: p, model: m}", i ? "," : "");
    cmx_buf_puts(&b, "]\n");
    for (int i = 0; i < 3000; i++)
        cmx_buf_puts(&b, "  - *m\n");
    assert_int_equal(cmx_config_load_string(b.data, b.len, "t.yaml", &cfg, &d), CMX_ECONFIG);
    assert_non_null(
        strstr(diag_text(&d), "t.yaml:9: error: configuration too large (more than 200000 nodes"));
    cmx_config_diag_free(&d);
    cmx_buf_free(&b);
}

static void test_multiple_errors_in_order(void **state)
{
    struct cmx_config_diag d;
    struct cmx_config *cfg = NULL;
    (void)state;

    /* models precede providers, so messages are produced out of file order and sorted. */
    const char *yaml = "models:\n"                       /* 1 */
                       "  - name: m\n"                   /* 2 */
                       "    deployments:\n"              /* 3 */
                       "      - provider: zz\n"          /* 4 */
                       "        model: a\n"              /* 5 */
                       "        weight: x\n"             /* 6 */
                       "providers:\n"                    /* 7 */
                       "  - name: p\n"                   /* 8 */
                       "    type: nope\n"                /* 9 */
                       "    cloud: c\n"                  /* 10 */
                       "    base_url: gopher://h\n"      /* 11 */
                       "workers: many\n"                 /* 12 */
                       "routing: { max_attempts: 0 }\n"; /* 13 */
    assert_int_equal(load(yaml, &cfg, &d), CMX_ECONFIG);
    assert_int_equal(d.errors, 6);
    assert_int_equal(d.warnings, 1);
    assert_string_equal(
        diag_text(&d),
        "t.yaml:4: error: models[0].deployments[0].provider: no provider named \"zz\" is "
        "defined\n"
        "t.yaml:6: error: models[0].deployments[0].weight must be an integer between 0 and "
        "1000000, got \"x\"\n"
        "t.yaml:8: warning: provider \"p\" is not used by any model deployment\n"
        "t.yaml:9: error: providers[0].type is not a known provider type (valid: openai, "
        "azure_openai, openai_compatible, bedrock, anthropic, vertex), got \"nope\"\n"
        "t.yaml:11: error: providers[0].base_url is not a valid URL: must start with http:// or "
        "https://, got \"gopher://h\"\n"
        "t.yaml:12: error: workers must be an integer between 0 and 1024, got \"many\"\n"
        "t.yaml:13: error: routing.max_attempts must be an integer between 1 and 100, got "
        "\"0\"\n");
    cmx_config_diag_free(&d);
}

static void test_warnings(void **state)
{
    struct cmx_config_diag d;
    struct cmx_config *cfg = NULL;
    (void)state;

    /* Warnings do not fail the load. */
    assert_int_equal(load(PROV "  - name: spare\n    type: openai_compatible\n    cloud: c\n"
                               "    base_url: http://h\n" MODEL,
                          &cfg, &d),
                     0);
    assert_non_null(cfg);
    assert_int_equal(d.errors, 0);
    assert_int_equal(d.warnings, 1);
    assert_string_equal(diag_text(&d),
                        "t.yaml:6: warning: provider \"spare\" is not used by any model "
                        "deployment\n");
    cmx_config_unref(cfg);
    cmx_config_diag_free(&d);

    expect("workers: 1\n", 0,
           "t.yaml:1: warning: no models are defined; every request will be refused\n");
}

/* ---- snapshot API ------------------------------------------------------------------ */

static void test_refcount_and_lookup(void **state)
{
    struct cmx_config_diag d;
    struct cmx_config *cfg = NULL;
    struct cmx_buf b;
    (void)state;

    cmx_buf_init(&b, 1 << 20);
    cmx_buf_puts(&b, PROV "models:\n");
    /* Names inserted in descending order so that the index has to sort them. */
    for (int i = 99; i >= 0; i--)
        cmx_buf_printf(
            &b, "  - { name: model-%02d, deployments: [ { provider: p, model: u%d } ] }\n", i, i);
    assert_int_equal(cmx_config_load_string(b.data, b.len, "t.yaml", &cfg, NULL), 0);
    cmx_buf_free(&b);
    assert_int_equal(cfg->n_models, 100);
    assert_int_equal(atomic_load(&cfg->refcount), 1);

    for (int i = 0; i < 100; i++) {
        char name[32];
        snprintf(name, sizeof(name), "model-%02d", i);
        const struct cmx_model_cfg *m = cmx_config_find_model(cfg, name, strlen(name));
        assert_non_null(m);
        assert_string_equal(m->name, name);
        assert_ptr_equal(m, &cfg->models[99 - i]);
    }
    /* Not NUL-terminated: a prefix of a longer buffer. */
    const char *body = "model-42\",\"messages\"";
    assert_ptr_equal(cmx_config_find_model(cfg, body, 8), &cfg->models[57]);
    assert_null(cmx_config_find_model(cfg, body, 7));
    assert_null(cmx_config_find_model(cfg, "MODEL-42", 8)); /* case-sensitive */
    assert_null(cmx_config_find_model(cfg, "model-100", 9));
    assert_null(cmx_config_find_model(cfg, "", 0));
    assert_null(cmx_config_find_model(cfg, NULL, 0));

    assert_ptr_equal(cmx_config_find_provider(cfg, "p"), &cfg->providers[0]);
    assert_null(cmx_config_find_provider(cfg, "q"));
    assert_null(cmx_config_find_provider(cfg, NULL));

    assert_ptr_equal(cmx_config_ref(cfg), cfg);
    assert_int_equal(atomic_load(&cfg->refcount), 2);
    cmx_config_unref(cfg);
    assert_int_equal(atomic_load(&cfg->refcount), 1);
    assert_string_equal(cfg->models[0].name, "model-99"); /* still alive */
    cmx_config_unref(cfg);
    cmx_config_unref(NULL);

    /* Lookups on a config without models. */
    assert_int_equal(cmx_config_load_string("workers: 1\n", 11, NULL, &cfg, NULL), 0);
    assert_string_equal(cfg->path, "<string>");
    assert_null(cmx_config_find_model(cfg, "x", 1));
    assert_null(cmx_config_find_provider(cfg, "x"));
    cmx_config_unref(cfg);
    cmx_config_diag_init(&d);
    cmx_config_diag_free(&d);

    assert_string_equal(cmx_provider_type_name(CMX_PROVIDER_OPENAI), "openai");
    assert_string_equal(cmx_provider_type_name(CMX_PROVIDER_AZURE_OPENAI), "azure_openai");
    assert_string_equal(cmx_provider_type_name(CMX_PROVIDER_OPENAI_COMPATIBLE),
                        "openai_compatible");
}

static char *write_temp(const char *text)
{
    static char path[64];
    strcpy(path, "/tmp/cmx_test_config_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_load_file(void **state)
{
    struct cmx_config_diag d;
    struct cmx_config *cfg = NULL;
    char want[256];
    (void)state;

    char *path = write_temp(PROV MODEL);
    cmx_config_diag_init(&d);
    assert_int_equal(cmx_config_load(path, &cfg, &d), 0);
    assert_string_equal(cfg->path, path);
    assert_string_equal(cfg->models[0].deployments[0].provider->name, "p");
    cmx_config_unref(cfg);
    cmx_config_diag_free(&d);
    unlink(path);

    path = write_temp("workers: x\n");
    cmx_config_diag_init(&d);
    assert_int_equal(cmx_config_load(path, &cfg, &d), CMX_ECONFIG);
    assert_null(cfg);
    snprintf(want, sizeof(want),
             "%s:1: error: workers must be an integer between 0 and 1024, got \"x\"\n", path);
    assert_string_equal(diag_text(&d), want);
    cmx_config_diag_free(&d);
    unlink(path);

    cmx_config_diag_init(&d);
    assert_int_equal(cmx_config_load("/nonexistent/cmx.yaml", &cfg, &d), CMX_EIO);
    assert_null(cfg);
    assert_string_equal(diag_text(&d),
                        "/nonexistent/cmx.yaml: error: cannot read: No such file or directory\n");
    assert_int_equal(d.errors, 1);
    cmx_config_diag_free(&d);
}

/* ---- cloudmux check ---------------------------------------------------------------- */

/* Runs cmx_cli_check with stdout and stderr captured into out/err. */
static int run_check(int argc, char **argv, char *out, size_t outsz, char *err, size_t errsz)
{
    char opath[] = "/tmp/cmx_test_out_XXXXXX", epath[] = "/tmp/cmx_test_err_XXXXXX";
    int ofd = mkstemp(opath), efd = mkstemp(epath);
    int so, se, rc;

    assert_true(ofd >= 0 && efd >= 0);
    fflush(stdout);
    fflush(stderr);
    so = dup(1);
    se = dup(2);
    dup2(ofd, 1);
    dup2(efd, 2);
    rc = cmx_cli_check(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so);
    close(se);
    ssize_t n = pread(ofd, out, outsz - 1, 0);
    out[n > 0 ? n : 0] = '\0';
    n = pread(efd, err, errsz - 1, 0);
    err[n > 0 ? n : 0] = '\0';
    close(ofd);
    close(efd);
    unlink(opath);
    unlink(epath);
    return rc;
}

static void test_check_command(void **state)
{
    char out[4096], err[4096], want[2048];
    (void)state;

    char *argv_none[] = {"check", NULL};
    assert_int_equal(run_check(1, argv_none, out, sizeof(out), err, sizeof(err)), 2);
    assert_non_null(strstr(err, "usage: cloudmux check --config FILE"));
    assert_string_equal(out, "");

    char *argv_bad[] = {"check", "--verbose", NULL};
    assert_int_equal(run_check(2, argv_bad, out, sizeof(out), err, sizeof(err)), 2);

    char *argv_dangling[] = {"check", "--config", NULL};
    assert_int_equal(run_check(2, argv_dangling, out, sizeof(out), err, sizeof(err)), 2);

    char *path = write_temp(PROV "  - name: azure-eastus\n"
                                 "    type: azure_openai\n"
                                 "    cloud: azure\n"
                                 "    region: eastus\n"
                                 "    base_url: https://r.openai.azure.com\n"
                                 "    api_key: k\n"
                                 "  - name: spare\n"
                                 "    type: openai_compatible\n"
                                 "    cloud: onprem\n"
                                 "    base_url: http://h\n"
                                 "workers: 2\n" MODEL
                                 "      - { provider: azure-eastus, model: dep, priority: 2 }\n");
    char *argv_ok[] = {"check", "--config", path, NULL};
    assert_int_equal(run_check(3, argv_ok, out, sizeof(out), err, sizeof(err)), 0);
    snprintf(want, sizeof(want),
             "%s: ok\n"
             "  listen 127.0.0.1:8080, workers 2\n"
             "  3 providers: p (openai_compatible, onprem), azure-eastus (azure_openai, "
             "azure/eastus), spare (openai_compatible, onprem)\n"
             "  1 model: m -> p/up (priority 1), azure-eastus/dep (priority 2)\n"
             "  routing priority, max_attempts 3, timeout 600s\n",
             path);
    assert_string_equal(out, want);
    snprintf(want, sizeof(want),
             "%s:12: warning: provider \"spare\" is not used by any model deployment\n", path);
    assert_string_equal(err, want);
    unlink(path);

    path = write_temp("workers: x\nlisten: nope\n");
    char *argv_err[] = {"check", path, NULL};
    argv_err[1] = NULL;
    char opt[128];
    snprintf(opt, sizeof(opt), "--config=%s", path);
    argv_err[1] = opt;
    assert_int_equal(run_check(2, argv_err, out, sizeof(out), err, sizeof(err)), 1);
    assert_string_equal(out, "");
    snprintf(want, sizeof(want),
             "%s:1: error: workers must be an integer between 0 and 1024, got \"x\"\n"
             "%s:2: error: listen must be host:port (e.g. 127.0.0.1:8080, 0.0.0.0:8080 or "
             "[::1]:8080): missing :port, got \"nope\"\n",
             path, path);
    assert_string_equal(err, want);
    unlink(path);

    char *argv_missing[] = {"check", "--config", "/nonexistent/x.yaml", NULL};
    assert_int_equal(run_check(3, argv_missing, out, sizeof(out), err, sizeof(err)), 1);
    assert_string_equal(err,
                        "/nonexistent/x.yaml: error: cannot read: No such file or directory\n");
}

/* Every example config in examples/ loads (with placeholder secrets), so that the documented
 * keys stay valid as the code moves. */
static void test_examples_load(void **state)
{
    (void)state;
    static const char *const env[] = {"AZURE_OPENAI_API_KEY", "OPENAI_API_KEY",
                                      "AWS_ACCESS_KEY_ID",    "AWS_SECRET_ACCESS_KEY",
                                      "AWS_SESSION_TOKEN",    "VLLM_API_KEY"};
    static const char *const files[] = {"examples/full.yaml", "examples/demo.yaml",
                                        "examples/partnership.yaml"};
    for (size_t i = 0; i < sizeof(env) / sizeof(env[0]); i++)
        setenv(env[i], "placeholder-secret-0123456789", 1);
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        struct cmx_config *cfg = NULL;
        struct cmx_config_diag d;
        cmx_config_diag_init(&d);
        int rc = cmx_config_load(files[i], &cfg, &d);
        if (rc != 0)
            fail_msg("%s does not load:\n%s", files[i], d.text.data ? d.text.data : "");
        cmx_config_unref(cfg);
        cmx_config_diag_free(&d);
    }
    for (size_t i = 0; i < sizeof(env) / sizeof(env[0]); i++)
        unsetenv(env[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_sizes_and_bools),
        cmocka_unit_test(test_env_expansion),
        cmocka_unit_test(test_env_errors),
        cmocka_unit_test(test_env_secret_not_printed),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_type_errors),
        cmocka_unit_test(test_providers),
        cmocka_unit_test(test_urls),
        cmocka_unit_test(test_listen),
        cmocka_unit_test(test_prices),
        cmocka_unit_test(test_models),
        cmocka_unit_test(test_yaml_errors),
        cmocka_unit_test(test_single_quoted),
        cmocka_unit_test(test_aliases),
        cmocka_unit_test(test_alias_budget),
        cmocka_unit_test(test_multiple_errors_in_order),
        cmocka_unit_test(test_warnings),
        cmocka_unit_test(test_refcount_and_lookup),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_check_command),
        cmocka_unit_test(test_examples_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
