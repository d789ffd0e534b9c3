/* Admission of /v1/ endpoints requests: who is calling (virtual key -> tenant) and whether the
 * tenant may use the model. Answers 401 / 404 itself; routing then applies the tenant's
 * clouds, regions and preferences (src/tenants/). */
#ifndef CMX_API_ADMIT_H
#define CMX_API_ADMIT_H

#include <stdbool.h>

#include "api/api.h"
#include "config/config.h"
#include "keys/registry.h"
#include "limits/limits.h"

/* Whether /v1/ endpoints need a virtual key with cfg and the published keys: `auth: keys`
 * always, `auth: none` never, otherwise once a tenant exists (in the config or stored through
 * the admin API) or a key does. */
bool cmx_admit_required(const struct cmx_config *cfg, const struct cmx_key_set *keys);

/* Authenticates the request on ctx into ctx->caller (who it runs as). Returns true to go on; false
 * after answering 401 (no key, unknown, revoked or expired key; the key is never echoed) or 403 (a
 * key whose tenant the config no longer defines). */
bool cmx_admit_authenticate(struct cmx_api_ctx *ctx);

/* True when the caller may use the public model name; otherwise answers 404
 * model_not_found exactly as for an unknown model (OpenAI's answer for a model the key
 * cannot access) and returns false. */
bool cmx_admit_model(struct cmx_api_ctx *ctx, const char *model);

/* Applies the caller's rate limits and budgets to a request about to go upstream: takes
 * from the key's and tenant's RPM and TPM buckets (tokens: the estimate of prompt plus
 * completion), then reserves worst_micros (its worst-case cost) against the key's and
 * tenant's budgets, all or nothing. Then calls go(ud) — before returning (memory limiter) or
 * later on the loop (Redis) — or answers 429 rate_limit_exceeded / insufficient_quota itself,
 * which finishes the request (its arena, and whatever ud points into, is gone then).
 * x-ratelimit-* headers are added to the answer either way. A caller without limits or
 * budgets (open mode) goes at once. */
void cmx_admit_quota(struct cmx_api_ctx *ctx, int64_t tokens, int64_t worst_micros,
                     void (*go)(void *ud), void *ud);

/* Settles what cmx_admit_quota() held, once, when the request ends: the TPM buckets are
 * corrected to tokens (the metered total; -1 when nothing was metered: the estimate
 * stands), the budget reservation becomes cost_micros (0 releases it). A take still in
 * flight (client gone) is abandoned: go/stop will not be called. */
void cmx_admit_settle(struct cmx_api_ctx *ctx, int64_t tokens, int64_t cost_micros);

/* Sends the settlements cmx_admit_settle() queued on this worker thread (one limiter call).
 * Called once per loop iteration by the worker, and before its limiter client closes. */
void cmx_admit_flush(struct cmx_limits_client *c);

#endif
