/* cloudmux check --config FILE: validate a configuration and summarise it. */
#include "cli/cli.h"
#include "config/config.h"
#include "core/err.h"

#include <stdio.h>
#include <string.h>

static const char usage[] = "usage: cloudmux check --config FILE\n"
                            "\n"
                            "Loads FILE, reports every problem as FILE:LINE: error: MESSAGE and\n"
                            "exits 1 if there is one; otherwise prints a summary and exits 0.\n";

static void print_providers(FILE *out, const struct cmx_config *cfg)
{
    fprintf(out, "  %zu provider%s%s", cfg->n_providers, cfg->n_providers == 1 ? "" : "s",
            cfg->n_providers ? ":" : "");
    for (size_t i = 0; i < cfg->n_providers; i++) {
        const struct cmx_provider_cfg *p = &cfg->providers[i];
        fprintf(out, "%s %s (%s, %s%s%s)", i ? "," : "", p->name, cmx_provider_type_name(p->type),
                p->cloud, p->region ? "/" : "", p->region ? p->region : "");
    }
    fputc('\n', out);
}

static void print_model(FILE *out, const struct cmx_model_cfg *m)
{
    fprintf(out, "%s", m->name);
    if (m->strategy != NULL)
        fprintf(out, " [%s]", m->strategy);
    fprintf(out, " ->");
    for (size_t d = 0; d < m->n_deployments; d++) {
        const struct cmx_deployment_cfg *dep = &m->deployments[d];
        fprintf(out, "%s %s/%s (priority %d)", d ? "," : "", dep->provider->name, dep->model,
                dep->priority);
    }
    fputc('\n', out);
}

static void print_summary(FILE *out, const char *path, const struct cmx_config *cfg)
{
    bool v6 = strchr(cfg->listen_host, ':') != NULL;

    fprintf(out, "%s: ok\n", path);
    fprintf(out, "  listen %s%s%s:%d, workers ", v6 ? "[" : "", cfg->listen_host, v6 ? "]" : "",
            cfg->listen_port);
    if (cfg->workers > 0)
        fprintf(out, "%d\n", cfg->workers);
    else
        fprintf(out, "auto (one per core)\n");
    print_providers(out, cfg);
    if (cfg->n_models == 1) {
        fprintf(out, "  1 model: ");
        print_model(out, &cfg->models[0]);
    } else {
        fprintf(out, "  %zu models%s\n", cfg->n_models, cfg->n_models ? ":" : "");
        for (size_t i = 0; i < cfg->n_models; i++) {
            fprintf(out, "    ");
            print_model(out, &cfg->models[i]);
        }
    }
    fprintf(out, "  routing %s, max_attempts %d, timeout %ds\n", cfg->routing.strategy,
            cfg->routing.max_attempts, cfg->routing.timeout_s);
    if (cfg->n_tenants > 0) {
        fprintf(out, "  %zu tenant%s:", cfg->n_tenants, cfg->n_tenants == 1 ? "" : "s");
        for (size_t i = 0; i < cfg->n_tenants; i++)
            fprintf(out, "%s %s", i ? "," : "", cfg->tenants[i].name ? cfg->tenants[i].name : "?");
        fputc('\n', out);
    }
    if (cfg->limits_given || cfg->n_tenants > 0 || cfg->auth != NULL) {
        char desc[512];
        cmx_limits_config_describe(&cfg->limits, desc, sizeof(desc));
        fprintf(out, "  limits %s; /v1 auth: %s\n", desc,
                cfg->auth != NULL ? cfg->auth : "keys once tenants or keys exist");
    }
}

int cmx_cli_check(int argc, char **argv)
{
    const char *path = NULL;
    struct cmx_config_diag diag;
    struct cmx_config *cfg = NULL;
    int rc;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--config") == 0 || strcmp(a, "-c") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "cloudmux check: %s needs a file name\n%s", a, usage);
                return 2;
            }
            path = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            path = a + 9;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage, stdout);
            return 0;
        } else {
            fprintf(stderr, "cloudmux check: unknown argument \"%s\"\n%s", a, usage);
            return 2;
        }
    }
    if (path == NULL || *path == '\0') {
        fprintf(stderr, "cloudmux check: --config FILE is required\n%s", usage);
        return 2;
    }

    cmx_config_diag_init(&diag);
    rc = cmx_config_load(path, &cfg, &diag);
    if (diag.text.len > 0)
        fputs(diag.text.data, stderr);
    if (rc != 0) {
        if (diag.errors == 0)
            fprintf(stderr, "%s: error: %s\n", path, cmx_strerror(rc));
        cmx_config_diag_free(&diag);
        return 1;
    }
    print_summary(stdout, path, cfg);
    cmx_config_unref(cfg);
    cmx_config_diag_free(&diag);
    return fflush(stdout) == 0 ? 0 : 1;
}
