/* cloudmux keys (create | list | revoke): virtual keys in the ledger database of a
 * config's gateway (src/keys/keystore.h). */
#include "cli/cli.h"
#include "config/config.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/err.h"
#include "keys/keystore.h"
#include "ledger/ledger.h"
#include "ledger/store.h"

#include <stdio.h>
#include <string.h>

const char cmx_cli_keys_usage[] =
    "usage: cloudmux keys create --config FILE --tenant T [--name N] [--expires DATE]\n"
    "                            [--rpm N] [--tpm N] [--budget AMOUNT]\n"
    "       cloudmux keys list --config FILE [--format table|json]\n"
    "       cloudmux keys revoke --config FILE ID\n"
    "\n"
    "Virtual keys live in the ledger database of FILE's gateway (`ledger:`; default\n"
    "sqlite://cloudmux.db next to FILE); every gateway sharing it picks changes up within a\n"
    "second.\n"
    "  create  makes a key for tenant T (defined in FILE or through POST /admin/v1/tenants)\n"
    "          and prints it once with its id: only its SHA-256 is stored, so it cannot be\n"
    "          shown again. --expires takes an ISO 8601 UTC date (its 00:00) or time;\n"
    "          --rpm/--tpm are the key's own rate limits (the tenant's still apply);\n"
    "          --budget is the key's budget per the tenant's budget period (e.g. 100.00).\n"
    "  list    id, name, tenant, created, expires, revoked, status, limits and budget of\n"
    "          every key (never the key itself)\n"
    "  revoke  revokes key ID (idempotent); it stops working on every gateway within a\n"
    "          second\n";

enum { O_CONFIG, O_TENANT, O_NAME, O_EXPIRES, O_RPM, O_TPM, O_BUDGET, O_FORMAT, N_OPT };

int cmx_cli_keys(int argc, char **argv)
{
    const char *sub = argc > 1 ? argv[1] : NULL;
    if (sub != NULL && (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0)) {
        fputs(cmx_cli_keys_usage, stdout);
        return 0;
    }
    if (sub == NULL ||
        (strcmp(sub, "create") != 0 && strcmp(sub, "list") != 0 && strcmp(sub, "revoke") != 0)) {
        fprintf(stderr, "cloudmux keys: create, list or revoke expected\n%s", cmx_cli_keys_usage);
        return 2;
    }
    static const char *const names[N_OPT] = {"--config", "--tenant", "--name",   "--expires",
                                             "--rpm",    "--tpm",    "--budget", "--format"};
    const char *v[N_OPT] = {NULL};
    const char *id = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(cmx_cli_keys_usage, stdout);
            return 0;
        }
        if (strcmp(argv[i], "-c") == 0)
            argv[i] = (char *)"--config";
        int hit = 0;
        for (size_t k = 0; k < N_OPT && hit == 0; k++) {
            hit = cmx_cli_opt(argc, argv, &i, names[k], &v[k]);
            if (hit < 0) {
                fprintf(stderr, "cloudmux keys %s: %s needs a value\n%s", sub, names[k],
                        cmx_cli_keys_usage);
                return 2;
            }
        }
        if (hit == 0 && strcmp(sub, "revoke") == 0 && id == NULL && argv[i][0] != '-') {
            id = argv[i];
            continue;
        }
        if (hit == 0) {
            fprintf(stderr, "cloudmux keys %s: unknown argument \"%s\"\n%s", sub, argv[i],
                    cmx_cli_keys_usage);
            return 2;
        }
    }
    bool create = strcmp(sub, "create") == 0, revoke = strcmp(sub, "revoke") == 0;
    if (v[O_CONFIG] == NULL || (create && v[O_TENANT] == NULL) || (revoke && id == NULL)) {
        fprintf(stderr, "cloudmux keys %s: --config FILE%s required\n%s", sub,
                create   ? " and --tenant T are"
                : revoke ? " and the key ID are"
                         : " is",
                cmx_cli_keys_usage);
        return 2;
    }
    bool json = false;
    if (v[O_FORMAT] != NULL && strcmp(v[O_FORMAT], "json") == 0)
        json = true;
    else if (v[O_FORMAT] != NULL && strcmp(v[O_FORMAT], "table") != 0) {
        fprintf(stderr, "cloudmux keys %s: --format is table or json\n", sub);
        return 2;
    }
    int64_t now = (int64_t)cmx_clock_now_ms();
    char err[512] = "";
    struct cmx_key_params p = {.tenant = v[O_TENANT], .name = v[O_NAME]};
    if (create && cmx_keystore_parse_params(v[O_EXPIRES], v[O_RPM], v[O_TPM], v[O_BUDGET], now, &p,
                                            err, sizeof(err)) != 0) {
        fprintf(stderr, "cloudmux keys create: %s\n", err);
        return 2;
    }
    struct cmx_config_diag diag;
    struct cmx_config *cfg = NULL;
    cmx_config_diag_init(&diag);
    int r = cmx_config_load(v[O_CONFIG], &cfg, &diag);
    if (r != 0) {
        fputs(diag.text.data ? diag.text.data : "", stderr);
        fprintf(stderr, "cloudmux keys: %s is not a valid configuration\n", v[O_CONFIG]);
        cmx_config_diag_free(&diag);
        return 1;
    }
    cmx_config_diag_free(&diag);
    char url[4096];
    struct cmx_ledger_store *s = NULL;
    if (cmx_ledger_url(cfg, url, sizeof(url)) == NULL) {
        fprintf(stderr, "cloudmux keys: the ledger is off in %s, and keys are stored in it\n",
                v[O_CONFIG]);
        cmx_config_unref(cfg);
        return 1;
    }
    if (cmx_ledger_store_open(url, &s, err, sizeof(err)) != 0) {
        fprintf(stderr, "cloudmux keys: %s\n", err);
        cmx_config_unref(cfg);
        return 1;
    }
    int rc = 0;
    if (create) {
        char key[CMX_KEY_TEXT_MAX + 1];
        struct cmx_key_rec rec;
        r = cmx_keystore_create(s, cfg, &p, now, key, &rec, err, sizeof(err));
        if (r != 0) {
            fprintf(stderr, "cloudmux keys create: %s\n", err);
            rc = r == CMX_EINVAL ? 2 : 1;
        } else {
            printf("%s\nid: %s\ntenant: %s\n", key, rec.id, rec.tenant);
            fprintf(stderr, "Store this key now: it is shown only once.\n");
            memset(key, 0, sizeof(key));
        }
    } else if (revoke) {
        bool was = false;
        r = s->ops->key_revoke(s, id, now, &was);
        if (r == CMX_ENOTFOUND) {
            fprintf(stderr, "cloudmux keys revoke: no key has the id %s\n", id);
            rc = 1;
        } else if (r != 0) {
            fprintf(stderr, "cloudmux keys revoke: the ledger database failed\n");
            rc = 1;
        } else {
            printf("%s %s\n", id, was ? "was already revoked" : "revoked");
        }
    } else {
        struct cmx_buf out;
        cmx_buf_init(&out, (size_t)1 << 30);
        if (cmx_keystore_list(s, json, now, &out) != 0) {
            fprintf(stderr, "cloudmux keys list: the ledger database cannot be read\n");
            rc = 1;
        } else {
            fwrite(out.data ? out.data : "", 1, out.len, stdout);
        }
        cmx_buf_free(&out);
    }
    s->ops->close(s);
    cmx_config_unref(cfg);
    return rc;
}
