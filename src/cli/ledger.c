/* cloudmux ledger (statement | usage): reports from the ledger of a config's gateway. */
#include "cli/cli.h"
#include "config/config.h"
#include "core/buf.h"
#include "core/err.h"
#include "ledger/ledger.h"

#include <stdio.h>
#include <string.h>

const char cmx_cli_ledger_usage[] =
    "usage: cloudmux ledger statement --config FILE --payee P [--period YYYY-MM[-DD]]\n"
    "                                 [--format table|csv|json]\n"
    "       cloudmux ledger usage --config FILE [--period YYYY-MM[-DD]]\n"
    "                             [--by model|cloud|provider|day|tenant|key]\n"
    "                             [--format table|csv|json]\n"
    "\n"
    "Reads the ledger that FILE's gateway writes (`ledger:`; default sqlite://cloudmux.db\n"
    "next to FILE).\n"
    "  statement  what payee P accrued under each revenue-share term in the period: revenue\n"
    "             base, rate, share, accrued, over-cap, cap remaining, requests; totals are\n"
    "             the sums of the per-request accrual rows\n"
    "  usage      requests, tokens (prompt, completion, cached, reasoning), revenue and cost,\n"
    "             in total or per model, cloud, provider, day, tenant or virtual key id\n"
    "             (requests in open mode group under an empty tenant / key)\n"
    "Amounts are exact decimals in the currency's units (6 decimals), never floats.\n";

int cmx_cli_ledger(int argc, char **argv)
{
    const char *sub = argc > 1 ? argv[1] : NULL;
    if (sub != NULL && (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0)) {
        fputs(cmx_cli_ledger_usage, stdout);
        return 0;
    }
    if (sub == NULL || (strcmp(sub, "statement") != 0 && strcmp(sub, "usage") != 0)) {
        fprintf(stderr, "cloudmux ledger: statement or usage expected\n%s", cmx_cli_ledger_usage);
        return 2;
    }
    static const char *const names[] = {"--config", "--payee", "--period", "--format", "--by"};
    const char *v[5] = {NULL, NULL, NULL, NULL, NULL};
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(cmx_cli_ledger_usage, stdout);
            return 0;
        }
        if (strcmp(argv[i], "-c") == 0)
            argv[i] = (char *)"--config";
        int hit = 0;
        for (size_t k = 0; k < 5 && hit == 0; k++) {
            hit = cmx_cli_opt(argc, argv, &i, names[k], &v[k]);
            if (hit < 0) {
                fprintf(stderr, "cloudmux ledger %s: %s needs a value\n%s", sub, names[k],
                        cmx_cli_ledger_usage);
                return 2;
            }
        }
        if (hit == 0) {
            fprintf(stderr, "cloudmux ledger %s: unknown argument \"%s\"\n%s", sub, argv[i],
                    cmx_cli_ledger_usage);
            return 2;
        }
    }
    const char *config = v[0], *payee = v[1], *period = v[2], *format = v[3], *by = v[4];
    bool statement = strcmp(sub, "statement") == 0;
    if (config == NULL || (statement && payee == NULL)) {
        fprintf(stderr, "cloudmux ledger %s: --config FILE%s required\n%s", sub,
                statement ? " and --payee P are" : " is", cmx_cli_ledger_usage);
        return 2;
    }
    enum cmx_ledger_format f = CMX_LEDGER_FORMAT_TABLE;
    if (format != NULL && strcmp(format, "csv") == 0)
        f = CMX_LEDGER_FORMAT_CSV;
    else if (format != NULL && strcmp(format, "json") == 0)
        f = CMX_LEDGER_FORMAT_JSON;
    else if (format != NULL && strcmp(format, "table") != 0) {
        fprintf(stderr, "cloudmux ledger %s: --format is table, csv or json\n", sub);
        return 2;
    }
    struct cmx_config_diag diag;
    struct cmx_config *cfg = NULL;
    cmx_config_diag_init(&diag);
    int r = cmx_config_load(config, &cfg, &diag);
    if (r != 0) {
        fputs(diag.text.data ? diag.text.data : "", stderr);
        fprintf(stderr, "cloudmux ledger: %s is not a valid configuration\n", config);
        cmx_config_diag_free(&diag);
        return 1;
    }
    cmx_config_diag_free(&diag);
    char url[4096], err[512] = "";
    if (cmx_ledger_url(cfg, url, sizeof(url)) == NULL) {
        fprintf(stderr, "cloudmux ledger: the ledger is off in %s\n", config);
        cmx_config_unref(cfg);
        return 1;
    }
    cmx_config_unref(cfg);
    struct cmx_buf out;
    cmx_buf_init(&out, (size_t)1 << 30);
    r = statement ? cmx_ledger_statement(url, payee, period, f, &out, err, sizeof(err))
                  : cmx_ledger_usage(url, period, by, f, &out, err, sizeof(err));
    if (r != 0) {
        fprintf(stderr, "cloudmux ledger %s: %s\n", sub, err[0] ? err : cmx_strerror(r));
        cmx_buf_free(&out);
        return r == CMX_EINVAL ? 2 : 1;
    }
    fwrite(out.data ? out.data : "", 1, out.len, stdout);
    cmx_buf_free(&out);
    return 0;
}
