/* cloudmux agreements (check | matrix | timeline): the distribution terms of a config,
 * asked about without starting the gateway. */
#include "agreements/agreements.h"
#include "cli/cli.h"
#include "config/config.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/err.h"

#include <stdio.h>
#include <string.h>

const char cmx_cli_agreements_usage[] =
    "usage: cloudmux agreements check --config FILE (--product P | --model M) --cloud C\n"
    "                                 [--capability X[,Y...]] [--at TIME]\n"
    "       cloudmux agreements matrix --config FILE [--at TIME] [--format table|csv|json]\n"
    "       cloudmux agreements timeline --config FILE [--product P]\n"
    "                                    [--format table|csv|json]\n"
    "\n"
    "Evaluates the distribution agreements of FILE (maker, products, agreements).\n"
    "  check     may cloud C serve the product (or model) for capability X (chat,\n"
    "            embeddings, tools, vision, audio; default chat) at TIME? Prints one line,\n"
    "            \"allowed: ...\" or \"denied REASON: ...\"; exit 0 allowed, 3 denied, 1 error\n"
    "  matrix    every product x cloud at TIME\n"
    "  timeline  every date at which some product x cloud decision changes\n"
    "TIME is a UTC date (2026-08-07, meaning 00:00Z) or date-time (2026-08-07T12:00:00Z);\n"
    "default: now.\n";

static const char *const usage = cmx_cli_agreements_usage;

struct args {
    const char *config, *product, *model, *cloud, *capability, *at, *format;
};

static int parse_args(int argc, char **argv, const char *sub, struct args *g, bool *help)
{
    static const char *const names[] = {"--config",     "--product", "--model", "--cloud",
                                        "--capability", "--at",      "--format"};
    *help = false;
    memset(g, 0, sizeof(*g));
    for (int i = 2; i < argc; i++) {
        const char **slots[] = {&g->config,     &g->product, &g->model, &g->cloud,
                                &g->capability, &g->at,      &g->format};
        int hit = 0;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            *help = true;
            return 0;
        }
        if (strcmp(argv[i], "-c") == 0)
            argv[i] = (char *)"--config";
        for (size_t k = 0; k < sizeof(names) / sizeof(names[0]) && hit == 0; k++) {
            hit = cmx_cli_opt(argc, argv, &i, names[k], slots[k]);
            if (hit < 0) {
                fprintf(stderr, "cloudmux agreements %s: %s needs a value\n%s", sub, names[k],
                        usage);
                return -1;
            }
        }
        if (hit == 0) {
            fprintf(stderr, "cloudmux agreements %s: unknown argument \"%s\"\n%s", sub, argv[i],
                    usage);
            return -1;
        }
    }
    if (g->config == NULL || *g->config == '\0') {
        fprintf(stderr, "cloudmux agreements %s: --config FILE is required\n%s", sub, usage);
        return -1;
    }
    return 0;
}

/* Only the options a subcommand takes. */
static int allow_only(const char *sub, const struct args *g, bool product, bool model, bool cloud,
                      bool capability, bool at, bool format)
{
    const char *bad = g->product && !product         ? "--product"
                      : g->model && !model           ? "--model"
                      : g->cloud && !cloud           ? "--cloud"
                      : g->capability && !capability ? "--capability"
                      : g->at && !at                 ? "--at"
                      : g->format && !format         ? "--format"
                                                     : NULL;
    if (bad != NULL) {
        fprintf(stderr, "cloudmux agreements %s: %s does not apply here\n%s", sub, bad, usage);
        return -1;
    }
    return 0;
}

static int parse_format(const char *sub, const char *s, enum cmx_agr_format *f)
{
    if (s == NULL || strcmp(s, "table") == 0)
        *f = CMX_AGR_FORMAT_TABLE;
    else if (strcmp(s, "csv") == 0)
        *f = CMX_AGR_FORMAT_CSV;
    else if (strcmp(s, "json") == 0)
        *f = CMX_AGR_FORMAT_JSON;
    else {
        fprintf(stderr, "cloudmux agreements %s: --format must be table, csv or json\n", sub);
        return -1;
    }
    return 0;
}

static int parse_at(const char *sub, const char *s, int64_t *at)
{
    if (s == NULL) {
        *at = (int64_t)cmx_clock_now_ms();
        return 0;
    }
    if (cmx_clock_parse_iso(s, strlen(s), at, NULL) != 0) {
        fprintf(stderr,
                "cloudmux agreements %s: --at must be a UTC date (2026-08-07) or date-time "
                "(2026-08-07T12:00:00Z), got \"%s\"\n",
                sub, s);
        return -1;
    }
    return 0;
}

static struct cmx_config *load(const char *path)
{
    struct cmx_config_diag diag;
    struct cmx_config *cfg = NULL;
    int rc;

    cmx_config_diag_init(&diag);
    rc = cmx_config_load(path, &cfg, &diag);
    if (rc != 0) {
        if (diag.text.len > 0)
            fputs(diag.text.data, stderr);
        if (diag.errors == 0)
            fprintf(stderr, "%s: error: %s\n", path, cmx_strerror(rc));
    }
    cmx_config_diag_free(&diag);
    return cfg;
}

static int emit(struct cmx_buf *b, int rc)
{
    if (rc != 0) {
        fprintf(stderr, "cloudmux agreements: %s\n", cmx_strerror(rc));
        return 1;
    }
    if (b->len > 0 && fwrite(b->data, 1, b->len, stdout) != b->len)
        return 1;
    return fflush(stdout) == 0 ? 0 : 1;
}

int cmx_cli_agreements(int argc, char **argv)
{
    struct args g;
    struct cmx_config *cfg;
    struct cmx_buf out;
    enum cmx_agr_format f;
    int64_t at;
    bool help;
    int rc;

    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "check") != 0 && strcmp(sub, "matrix") != 0 && strcmp(sub, "timeline") != 0) {
        fprintf(stderr, "cloudmux agreements: unknown subcommand \"%s\"\n%s", sub, usage);
        return 2;
    }
    if (parse_args(argc, argv, sub, &g, &help) != 0)
        return 2;
    if (help) {
        fputs(usage, stdout);
        return 0;
    }

    if (strcmp(sub, "check") == 0) {
        if (allow_only(sub, &g, true, true, true, true, true, false) != 0)
            return 2;
        if ((g.product == NULL) == (g.model == NULL)) {
            fprintf(stderr, "cloudmux agreements check: give one of --product or --model\n%s",
                    usage);
            return 2;
        }
        if (g.cloud == NULL) {
            fprintf(stderr, "cloudmux agreements check: --cloud is required\n%s", usage);
            return 2;
        }
    } else if (strcmp(sub, "matrix") == 0) {
        if (allow_only(sub, &g, false, false, false, false, true, true) != 0)
            return 2;
    } else if (allow_only(sub, &g, true, false, false, false, false, true) != 0) {
        return 2;
    }
    if (parse_at(sub, g.at, &at) != 0 || parse_format(sub, g.format, &f) != 0)
        return 2;

    cfg = load(g.config);
    if (cfg == NULL)
        return 1;
    cmx_buf_init(&out, 64u << 20);
    if (strcmp(sub, "check") == 0) {
        char err[256];
        bool allowed = false;
        rc = cmx_agreements_check_line(cfg, g.product, g.model, g.cloud, g.capability, (uint64_t)at,
                                       &allowed, &out, err, sizeof(err));
        if (rc == CMX_EINVAL || rc == CMX_ENOTFOUND) {
            fprintf(stderr, "cloudmux agreements check: %s\n", err);
            rc = 1;
        } else {
            rc = emit(&out, rc);
            if (rc == 0 && !allowed)
                rc = 3;
        }
    } else if (strcmp(sub, "matrix") == 0) {
        rc = emit(&out, cmx_agreements_matrix(cfg, at, f, &out));
    } else {
        rc = cmx_agreements_timeline(cfg, g.product, f, &out);
        if (rc == CMX_ENOTFOUND) {
            fprintf(stderr, "cloudmux agreements timeline: no product named \"%s\" is defined\n",
                    g.product);
            rc = 1;
        } else {
            rc = emit(&out, rc);
        }
    }
    cmx_buf_free(&out);
    cmx_config_unref(cfg);
    return rc;
}
