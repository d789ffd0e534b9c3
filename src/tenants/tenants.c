/* Tenant rules: model globs, cloud and region eligibility, cloud preference. */
#include "tenants/tenants.h"
#include "core/err.h"

#include <fnmatch.h>
#include <string.h>

static bool in_list(const char *const *v, size_t n, const char *s)
{
    if (s == NULL)
        return false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], s) == 0)
            return true;
    return false;
}

bool cmx_tenant_model_allowed(const struct cmx_tenant_cfg *t, const char *model)
{
    if (t == NULL || t->n_models == 0)
        return true;
    for (size_t i = 0; i < t->n_models; i++)
        if (fnmatch(t->models[i], model, 0) == 0)
            return true;
    return false;
}

/* The reason t excludes d, or NULL. */
static const char *excluded_by(const struct cmx_tenant_cfg *t, const struct cmx_deployment_cfg *d)
{
    const struct cmx_provider_cfg *p = d->provider;
    if (t->n_allowed_clouds > 0 && !in_list(t->allowed_clouds, t->n_allowed_clouds, p->cloud))
        return "cloud_not_allowed";
    if (t->n_regions > 0 && !in_list(t->regions, t->n_regions, p->region))
        return "region_not_allowed";
    return NULL;
}

bool cmx_tenant_filter(void *ud, const struct cmx_deployment_cfg *d, const char **why)
{
    const struct cmx_tenant_cfg *t = ud;
    const char *r = t != NULL ? excluded_by(t, d) : NULL;
    if (r == NULL)
        return true;
    *why = r;
    return false;
}

size_t cmx_tenant_cloud_rank(const void *ud, const struct cmx_deployment_cfg *d)
{
    const struct cmx_tenant_cfg *t = ud;
    for (size_t i = 0; i < t->n_preferred_clouds; i++)
        if (d->provider->cloud != NULL && strcmp(t->preferred_clouds[i], d->provider->cloud) == 0)
            return i;
    return t->n_preferred_clouds;
}

int cmx_tenant_denial(const struct cmx_tenant_cfg *t, const struct cmx_route_excluded *ex, size_t n,
                      struct cmx_buf *out)
{
    bool any = false;
    int rc = 0;

    for (size_t i = 0; i < n && rc == 0; i++) {
        const struct cmx_deployment_cfg *d = ex[i].d;
        const char *r = excluded_by(t, d);
        if (r == NULL)
            continue;
        const struct cmx_provider_cfg *p = d->provider;
        rc = cmx_buf_printf(out, "%s%s", any ? ", " : "tenant ", any ? "" : t->name);
        if (rc == 0 && !any)
            rc = cmx_buf_puts(out, " excludes ");
        if (rc == 0) {
            if (strcmp(r, "cloud_not_allowed") == 0)
                rc = cmx_buf_printf(out, "%s (cloud %s is not in allowed_clouds)", p->name,
                                    p->cloud ? p->cloud : "(none)");
            else
                rc = cmx_buf_printf(out, "%s (region %s is not in regions)", p->name,
                                    p->region ? p->region : "(none)");
        }
        any = true;
    }
    return rc != 0 ? rc : any ? 0 : CMX_ENOTFOUND;
}
