/*
 * ui.h — the dashboard's assets, embedded in the binary at build time (docs/ui.md).
 *
 * ui/embed.sh turns each file of ui/ into a ui_asset of build/gen/ui_assets.c: its bytes, its
 * gzip when that is smaller, its media type and the start of its SHA-256 as an ETag. api_ui.c
 * serves them at /ui/ and /ui/{asset}. Everything here is constant and lives for the process.
 */
#ifndef FACTUM_UI_H
#define FACTUM_UI_H

#include <stddef.h>

typedef struct ui_asset {
    const char *name; /* "app.js": the file's name in ui/, its path under /ui/ */
    const char *type; /* the Content-Type */
    const char *etag; /* 16 hex digits of the SHA-256 of body (no quotes) */
    const unsigned char *body;
    size_t len;
    const unsigned char *gz; /* gzip of body, or NULL when it would not be smaller */
    size_t gz_len;
} ui_asset;

extern const ui_asset ui_assets[];
extern const size_t ui_asset_count;

#endif
