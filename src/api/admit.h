/* Admission of /v1/ endpoints requests: who is calling (virtual key -> tenant) and whether the
 * tenant may use the model. Answers 401 / 404 itself; routing then applies the tenant's
 * clouds, regions and preferences (src/tenants/). */
#ifndef CMX_API_ADMIT_H
#define CMX_API_ADMIT_H

#include <stdbool.h>

#include "api/api.h"
#include "config/config.h"
#include "keys/registry.h"

/* Whether /v1/ endpoints needs a virtual key with cfg and the published keys: `auth: keys` always,
 * `auth: none` never, otherwise once a tenant is configured or a key exists. */
bool cmx_admit_required(const struct cmx_config *cfg, const struct cmx_key_set *keys);

/* Authenticates the request on ctx into ctx->caller (who it runs as). Returns true to go on; false
 * after answering 401 (no key, unknown, revoked or expired key; the key is never echoed) or 403 (a
 * key whose tenant the config no longer defines). */
bool cmx_admit_authenticate(struct cmx_api_ctx *ctx);

/* True when the caller may use the public model name; otherwise answers 404
 * model_not_found exactly as for an unknown model (OpenAI's answer for a model the key
 * cannot access) and returns false. */
bool cmx_admit_model(struct cmx_api_ctx *ctx, const char *model);

#endif
