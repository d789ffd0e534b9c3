/* Private to src/config/: the tenants section and the auth switch (config_tenants.c), for
 * the key tables in config.c. */
#ifndef CMX_CONFIG_CONFIG_TENANTS_H
#define CMX_CONFIG_CONFIG_TENANTS_H

#include "config/config_int.h"

/* The top-level "tenants" row (obj is the struct cmx_config); after providers and models. */
int cmx_config_tenants_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line,
                          const char *where, void *obj);

/* The top-level "limits" row: `memory`, `redis://[user:password@]host[:port][/db]`, or a
 * map {url, on_error: fail_open | fail_closed, timeout_ms} (obj is the struct cmx_config). */
int cmx_config_limits_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line,
                         const char *where, void *obj);

/* After every section was read: duplicate names, clouds / regions / model globs that match
 * nothing the config defines (warnings: a typo would silently exclude everything),
 * preferred clouds outside allowed_clouds (error). */
void cmx_config_tenants_finish(struct cmx_config_ctx *ctx);

#endif
