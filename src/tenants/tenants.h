/* Tenants on the request path: which models a tenant may use (globs), which deployments it
 * may reach (allowed clouds, data-residency regions), which clouds it prefers, and the 403
 * that explains an exclusion. Pure functions over the config snapshot; no allocation. */
#ifndef CMX_TENANTS_TENANTS_H
#define CMX_TENANTS_TENANTS_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "core/buf.h"
#include "router/router.h"

/* True when tenant t may use the public model name (NUL-terminated): t has no models list,
 * or one of its globs matches (fnmatch(3): '*', '?', '[...]'). */
bool cmx_tenant_model_allowed(const struct cmx_tenant_cfg *t, const char *model);

/* A cmx_route_filter_fn; ud is the struct cmx_tenant_cfg. True when deployment d is on an
 * allowed cloud and in an allowed region (a deployment whose provider names no region is
 * outside every regions list: residency cannot be shown). Otherwise *why is the static
 * reason "cloud_not_allowed" or "region_not_allowed". Thread: any. */
bool cmx_tenant_filter(void *ud, const struct cmx_deployment_cfg *d, const char **why);

/* The rank of d's cloud in t's preferred_clouds (0 first), or t->n_preferred_clouds when it
 * is not preferred; t is a struct cmx_tenant_cfg (the router's rank hook). */
size_t cmx_tenant_cloud_rank(const void *t, const struct cmx_deployment_cfg *d);

/* Appends to out, for each deployment in ex[0..n) that the tenant's rules exclude, the
 * rule: "tenant acme excludes azure-westeurope (cloud azure is not in allowed_clouds),
 * gcp-east (region us-east4 is not in regions)". 0, CMX_ENOTFOUND when none of ex was
 * excluded by the tenant (out untouched), or the buffer's error. */
int cmx_tenant_denial(const struct cmx_tenant_cfg *t, const struct cmx_route_excluded *ex, size_t n,
                      struct cmx_buf *out);

#endif
