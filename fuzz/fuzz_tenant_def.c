/* libFuzzer target for tenant definitions sent to POST /admin/v1/tenants
 * (cmx_keystore_tenant_check in src/keys/keystore.c): arbitrary bytes as the JSON body. For
 * an accepted definition, checks that
 *   - its canonical text is accepted again, to the same text and name (idempotent);
 *   - the tenant built from it (the refresher's snapshot) has that name, and its JSON form
 *     (GET /admin/v1/tenants) is accepted too and describes the same tenant.
 * Besides no crash, no leak, no UB. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "keys/keystore.h"
#include "ledger/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *c = NULL, name[64], err[1024];
    if (size > 4096)
        return 0;
    if (cmx_keystore_tenant_check((const char *)data, size, &c, name, err, sizeof(err)) != 0) {
        check(c == NULL && err[0] != '\0');
        return 0;
    }
    char *c2 = NULL, name2[64];
    check(cmx_keystore_tenant_check(c, strlen(c), &c2, name2, err, sizeof(err)) == 0);
    check(strcmp(c, c2) == 0 && strcmp(name, name2) == 0);
    free(c2);

    struct cmx_ledger_tenant_row row;
    memset(&row, 0, sizeof(row));
    memcpy(row.name, name, sizeof(row.name));
    row.definition = c;
    struct cmx_ledger_rows rows = {.rows = &row, .n = 1};
    struct cmx_tenant_set *ts = cmx_tenant_set_build(&rows);
    check(ts != NULL && ts->n == 1);
    const struct cmx_tenant_cfg *t = cmx_tenant_set_find(ts, name);
    check(t != NULL);
    struct cmx_buf b;
    cmx_buf_init(&b, 1u << 20);
    cmx_keystore_tenant_json(&b, t);
    char *c3 = NULL, name3[64];
    check(b.data != NULL &&
          cmx_keystore_tenant_check(b.data, b.len, &c3, name3, err, sizeof(err)) == 0);
    check(strcmp(name3, name) == 0);
    struct cmx_ledger_tenant_row row3 = {.definition = c3};
    memcpy(row3.name, name3, sizeof(row3.name));
    struct cmx_ledger_rows rows3 = {.rows = &row3, .n = 1};
    struct cmx_tenant_set *ts3 = cmx_tenant_set_build(&rows3);
    check(ts3 != NULL && ts3->n == 1);
    const struct cmx_tenant_cfg *u = &ts3->cfgs[0]->tenants[0];
    check(u->budget_micros == t->budget_micros && u->rpm == t->rpm && u->tpm == t->tpm &&
          u->n_models == t->n_models && u->n_regions == t->n_regions &&
          u->n_allowed_clouds == t->n_allowed_clouds &&
          u->n_preferred_clouds == t->n_preferred_clouds);
    for (size_t i = 0; i < t->n_models; i++)
        check(strcmp(u->models[i], t->models[i]) == 0);
    cmx_tenant_set_unref(ts3);
    free(c3);
    cmx_buf_free(&b);
    cmx_tenant_set_unref(ts);
    free(c);
    return 0;
}
