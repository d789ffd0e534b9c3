/* Admin routes of virtual keys and stored tenants (admin_keys.c). */
#ifndef CMX_API_ADMIN_KEYS_H
#define CMX_API_ADMIN_KEYS_H

#include <stdbool.h>

#include "api/api.h"

/* Serves /admin/v1/keys[/{id}] and /admin/v1/tenants[/{name}] (the caller checked the admin
 * key). Returns false, answering nothing, for any other path. */
bool cmx_admin_keys_route(struct cmx_api_ctx *ctx);

#endif
