/* libFuzzer target for the ledger's spool lines (src/ledger/ledger.c), which are read back
 * after a crash and may be cut anywhere: any input either parses into a record or is
 * rejected; a parsed record formats back into a line that parses into the same record.
 * Besides no crash, no leak, no UB. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "ledger/ledger.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    char *line = malloc(size + 1);
    if (line == NULL)
        return 0;
    memcpy(line, data, size);
    line[size] = '\0';
    struct cmx_ledger_rec *r = cmx_ledger_spool_parse(line);
    free(line);
    if (r == NULL)
        return 0;
    struct cmx_buf b;
    cmx_buf_init(&b, 1u << 20);
    cmx_ledger_spool_line(&b, r);
    check(b.len > 0 && b.data[b.len - 1] == '\n');
    b.data[--b.len] = '\0';
    struct cmx_ledger_rec *again = cmx_ledger_spool_parse(b.data);
    check(again != NULL);
    check(again->n_acc == r->n_acc);
    check(strcmp(again->request_id, r->request_id) == 0 && again->ts_ms == r->ts_ms &&
          again->revenue_micros == r->revenue_micros && again->status == r->status);
    for (size_t i = 0; i < r->n_acc; i++)
        check(strcmp(again->acc[i].payee, r->acc[i].payee) == 0 &&
              again->acc[i].amount_micros == r->acc[i].amount_micros);
    free(again);
    free(r);
    cmx_buf_free(&b);
    return 0;
}
