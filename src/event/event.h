/*
 * event.h — the private side of the CloudEvents parser, for code in this tree only.
 */
#ifndef FACTUM_EVENT_H
#define FACTUM_EVENT_H

#include "factum.h"

/* Gives the set a malloc'd text it borrows from; factum_events_free frees it with the set. */
void events_own_text(factum_events_t *set, char *text);

#endif
