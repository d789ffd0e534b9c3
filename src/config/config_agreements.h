/* Private to src/config/: the handlers of the maker, products and agreements sections and
 * of models[].product (config_agreements.c), for the key tables in config.c. */
#ifndef CMX_CONFIG_CONFIG_AGREEMENTS_H
#define CMX_CONFIG_CONFIG_AGREEMENTS_H

#include "config/config_int.h"

/* Top-level rows (obj is the struct cmx_config). They must come after "models" in the
 * table; "products" before "agreements". */
int cmx_config_maker_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line,
                        const char *where, void *obj);
int cmx_config_products_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line,
                           const char *where, void *obj);
int cmx_config_agreements_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line,
                             const char *where, void *obj);

/* models[].product (obj is the struct cmx_model_cfg, an entry of cfg->models). */
int cmx_config_model_product_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line,
                                const char *where, void *obj);

/* After every section was read: resolves names across sections (models -> products,
 * terms -> products, clouds), runs the cross-section checks, and precomputes the
 * decisions when there is no error. Does nothing when no agreement section was given. */
void cmx_config_agreements_finish(struct cmx_config_ctx *ctx);

#endif
