/*
 * tags.h — tags, tag queries and append conditions inside the store (tags.c, docs/dcb.md).
 */
#ifndef FACTUM_TAGS_H
#define FACTUM_TAGS_H

#include "store.h"

/* The next tag of a space-separated list (*rest moves past it); false at its end. */
bool tags_next(factum_str_t *rest, factum_str_t *tag);
/* 0 if the extension members' `tags` (if any) is a valid list, else FACTUM_EBADEVENT or
   FACTUM_ETOOBIG naming event i. */
int tags_check_members(factum_str_t ext, size_t i, factum_error_t *err);
/* The tag index key of a tag (implicit ones included). */
uint64_t tags_key(factum_str_t tag);
/* The key of the event's implicit tag: 0 "stream:", 1 "type:". */
uint64_t tags_key_implicit(const factum_event_t *e, int which);
/* Adds the event's tag entries (its stream, type and explicit tags) at pos; index write lock held. */
int tags_index_event(index_t *ix, const factum_event_t *e, uint64_t pos);
/* Whether key is the tag key of one of the event's tags (factum check). */
bool tags_key_of(const factum_event_t *e, uint64_t key);
/* The posting lists that serve a query item (at most FACTUM_MAX_QUERY_ITEMS keys). */
size_t tags_item_keys(const factum_query_item_t *it, uint64_t *keys);
/* A copy of q in one allocation (free() it). NULL when out of memory. */
factum_tag_query_t *tags_query_copy(const factum_tag_query_t *q);
/* The writer thread: the first position after `after` (FACTUM_AFTER_NONE: any) of an event
   matching q, its own commit group included, or UINT64_MAX. 0 or a read error. */
int tags_condition_first(factum_t *db, const factum_tag_query_t *q, uint64_t after, uint64_t *found,
                         factum_error_t *err);

#endif
