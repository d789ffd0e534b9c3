/* libFuzzer target for src/config/: feeds arbitrary bytes to cmx_config_load_string and
 * checks what must hold for any input (besides no crash, no leak, no UB):
 *   - the return code, *out and the diag counts agree (0 <=> a config and no errors);
 *   - every diag line is "NAME:LINE: error|warning: MSG\n" with LINE >= 1;
 *   - an environment variable's value never appears in a message unless the input itself
 *     contains it (secrets are never echoed);
 *   - a loaded snapshot is consistent: names set, deployments point into providers,
 *     every model is found by cmx_config_find_model, prices are in range. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define NAME   "fuzz.yaml"
#define SECRET "S3cr3tV4lue"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* Short names so that the fuzzer finds them; K holds a secret-looking value. */
    setenv("K", SECRET, 1);
    setenv("U", "http://" SECRET ".example", 1);
    setenv("E", "", 1);
    setenv("N", "7", 1);
    unsetenv("X");
    return 0;
}

static void check(bool ok)
{
    if (!ok)
        abort();
}

static void check_diag(const struct cmx_config_diag *d, const uint8_t *data, size_t size)
{
    const char *p = d->text.data ? d->text.data : "";
    const char *end = p + d->text.len;
    int errors = 0, warnings = 0;

    check(strlen(p) == d->text.len);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        check(nl != NULL);
        check(strncmp(p, NAME ":", strlen(NAME) + 1) == 0);
        const char *q = p + strlen(NAME) + 1;
        check(*q >= '1' && *q <= '9');
        while (*q >= '0' && *q <= '9')
            q++;
        if (strncmp(q, ": error: ", 9) == 0)
            errors++;
        else if (strncmp(q, ": warning: ", 11) == 0)
            warnings++;
        else
            check(false);
        p = nl + 1;
    }
    /* The text is capped, so it may hold fewer lines than were counted. */
    check(errors <= d->errors && warnings <= d->warnings);
    if (d->text.len < 4096) {
        check(errors == d->errors);
        check(warnings == d->warnings);
    }
    if (d->text.len > 0 && memmem(d->text.data, d->text.len, SECRET, strlen(SECRET)) != NULL)
        check(memmem(data, size, SECRET, strlen(SECRET)) != NULL);
}

static void check_config(const struct cmx_config *cfg)
{
    check(cfg->listen_host != NULL && cfg->listen_port >= 1 && cfg->listen_port <= 65535);
    check(cfg->workers >= 0);
    check(cfg->routing.strategy != NULL && cfg->routing.max_attempts >= 1);
    for (size_t i = 0; i < cfg->n_providers; i++) {
        const struct cmx_provider_cfg *p = &cfg->providers[i];
        check(p->name != NULL && p->cloud != NULL && p->base_url != NULL);
        check(cmx_config_find_provider(cfg, p->name) == p);
        if (p->type != CMX_PROVIDER_OPENAI_COMPATIBLE)
            check(p->api_key != NULL);
    }
    for (size_t i = 0; i < cfg->n_models; i++) {
        const struct cmx_model_cfg *m = &cfg->models[i];
        check(m->name != NULL && m->n_deployments >= 1);
        check(cmx_config_find_model(cfg, m->name, strlen(m->name)) == m);
        for (size_t j = 0; j < m->n_deployments; j++) {
            const struct cmx_deployment_cfg *dep = &m->deployments[j];
            check(dep->provider >= cfg->providers &&
                  dep->provider < cfg->providers + cfg->n_providers);
            check(dep->model != NULL && dep->priority >= 0 && dep->weight >= 0);
            if (dep->has_price)
                check(dep->price.input_per_mtok >= 0 && dep->price.output_per_mtok >= 0 &&
                      dep->price.cached_input_per_mtok >= -1);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cmx_config_diag diag;
    struct cmx_config *cfg = NULL;

    cmx_config_diag_init(&diag);
    int rc = cmx_config_load_string((const char *)data, size, NAME, &cfg, &diag);
    check_diag(&diag, data, size);
    if (rc == 0) {
        check(cfg != NULL && diag.errors == 0);
        check_config(cfg);
        cmx_config_unref(cmx_config_ref(cfg));
        cmx_config_unref(cfg);
    } else {
        check(cfg == NULL);
        check(rc == CMX_ECONFIG || rc == CMX_ENOMEM);
        check(diag.errors > 0);
    }
    cmx_config_diag_free(&diag);
    return 0;
}
