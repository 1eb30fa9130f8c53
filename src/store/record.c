/*
 * record.c — encoding and verification of stored events (see record.h, docs/format.md).
 */
#include "record.h"

static size_t body_len(factum_str_t stream, const factum_event_t *e) {
    return stream.len + e->id.len + e->type.len + e->correlationid.len + e->causationid.len + e->source.len +
           e->subject.len + e->datacontenttype.len + e->extensions.len + e->data.len;
}

size_t record_size(factum_str_t stream, const factum_event_t *e) {
    size_t n = RECORD_HEADER + body_len(stream, e);
    return (n + RECORD_ALIGN - 1) & ~(size_t)(RECORD_ALIGN - 1);
}

static uint8_t *put(uint8_t *p, uint8_t *hdr, int off, int width, factum_str_t s) {
    if (width == 2)
        store16(hdr + off, (uint16_t)s.len);
    else
        store32(hdr + off, (uint32_t)s.len);
    if (s.len) memcpy(p, s.ptr, s.len);
    return p + s.len;
}

void record_encode(uint8_t *h, factum_str_t stream, const factum_event_t *e) {
    size_t size = record_size(stream, e);
    memset(h, 0, RECORD_HEADER);
    store32(h + R_MAGIC, RECORD_MAGIC);
    store32(h + R_LENGTH, (uint32_t)size);
    store32(h + R_FLAGS, ((uint32_t)e->data_format << RECORD_FORMAT_SHIFT) & RECORD_FORMAT_MASK);
    uint8_t *p = h + RECORD_HEADER;
    /* Body fields, in the order of their length fields in the header. */
    p = put(p, h, R_STREAM_LEN, 2, stream);
    p = put(p, h, R_ID_LEN, 2, e->id);
    p = put(p, h, R_TYPE_LEN, 2, e->type);
    p = put(p, h, R_CORR_LEN, 2, e->correlationid);
    p = put(p, h, R_CAUSE_LEN, 2, e->causationid);
    p = put(p, h, R_SOURCE_LEN, 2, e->source);
    p = put(p, h, R_SUBJECT_LEN, 2, e->subject);
    p = put(p, h, R_CTYPE_LEN, 2, e->datacontenttype);
    p = put(p, h, R_EXT_LEN, 4, e->extensions);
    p = put(p, h, R_DATA_LEN, 4, e->data);
    memset(p, 0, (size_t)(h + size - p));
}

static uint32_t record_crc(const uint8_t *p, uint32_t len) {
    uint32_t c = crc32c(p, R_CRC);
    return crc32c_extend(c, p + R_CRC + 4, len - R_CRC - 4);
}

void record_seal(uint8_t *p, uint64_t position, uint64_t revision, int64_t time_us, int batch_end,
                 uint64_t group_first) {
    store64(p + R_POSITION, position);
    store64(p + R_REVISION, revision);
    store64(p + R_TIME, (uint64_t)time_us);
    uint64_t d = position - group_first;
    uint32_t flags = load32(p + R_FLAGS) & RECORD_FORMAT_MASK;
    flags |= (uint32_t)MIN(d, RECORD_GROUP_MAX) << RECORD_GROUP_SHIFT;
    store32(p + R_FLAGS, flags | (batch_end ? RECORD_BATCH_END : 0));
    store32(p + R_CRC, record_crc(p, load32(p + R_LENGTH)));
}

static const uint8_t *take(const uint8_t *p, factum_str_t *s, size_t n) {
    s->ptr = n ? (const char *)p : "";
    s->len = n;
    return p + n;
}

int record_decode(const uint8_t *p, size_t avail, factum_event_t *e, uint32_t *len) {
    if (avail < RECORD_HEADER) {
        for (size_t i = 0; i < avail; i++)
            if (p[i]) return RECORD_BAD;
        return RECORD_EMPTY;
    }
    uint32_t magic = load32(p + R_MAGIC), size = load32(p + R_LENGTH);
    if (magic == 0 && size == 0) return RECORD_EMPTY;
    if (magic != RECORD_MAGIC || size < RECORD_HEADER || size % RECORD_ALIGN || size > avail) return RECORD_BAD;
    uint32_t flags = load32(p + R_FLAGS);
    if (flags & ~(uint32_t)(RECORD_BATCH_END | RECORD_FORMAT_MASK | ((uint32_t)RECORD_GROUP_MAX << RECORD_GROUP_SHIFT)))
        return RECORD_BAD;
    if (((flags & RECORD_FORMAT_MASK) >> RECORD_FORMAT_SHIFT) > FACTUM_DATA_BINARY) return RECORD_BAD;
    if ((flags >> RECORD_GROUP_SHIFT) > load64(p + R_POSITION)) return RECORD_BAD; /* its group cannot begin before 0 */
    uint64_t body = (uint64_t)load16(p + R_STREAM_LEN) + load16(p + R_ID_LEN) + load16(p + R_TYPE_LEN) +
                    load16(p + R_CORR_LEN) + load16(p + R_CAUSE_LEN) + load16(p + R_SOURCE_LEN) +
                    load16(p + R_SUBJECT_LEN) + load16(p + R_CTYPE_LEN) + load32(p + R_EXT_LEN) +
                    load32(p + R_DATA_LEN);
    if (RECORD_HEADER + body > size || size - (RECORD_HEADER + body) >= RECORD_ALIGN) return RECORD_BAD;
    /* The store never writes an event without stream, id and type, so no record is shorter
       than RECORD_MIN; position maps are sized on that. */
    if (!load16(p + R_STREAM_LEN) || !load16(p + R_ID_LEN) || !load16(p + R_TYPE_LEN)) return RECORD_BAD;
    for (uint64_t i = RECORD_HEADER + body; i < size; i++)
        if (p[i]) return RECORD_BAD; /* padding is zero */
    if (load32(p + R_CRC) != record_crc(p, size)) return RECORD_BAD;
    if (len) *len = size;
    if (e) record_parse(p, e);
    return RECORD_OK;
}

void record_parse(const uint8_t *p, factum_event_t *e) {
    uint32_t flags = load32(p + R_FLAGS);
    const uint8_t *b = p + RECORD_HEADER;
    b = take(b, &e->stream, load16(p + R_STREAM_LEN));
    b = take(b, &e->id, load16(p + R_ID_LEN));
    b = take(b, &e->type, load16(p + R_TYPE_LEN));
    b = take(b, &e->correlationid, load16(p + R_CORR_LEN));
    b = take(b, &e->causationid, load16(p + R_CAUSE_LEN));
    b = take(b, &e->source, load16(p + R_SOURCE_LEN));
    b = take(b, &e->subject, load16(p + R_SUBJECT_LEN));
    b = take(b, &e->datacontenttype, load16(p + R_CTYPE_LEN));
    b = take(b, &e->extensions, load32(p + R_EXT_LEN));
    take(b, &e->data, load32(p + R_DATA_LEN));
    e->data_format = (int)((flags & RECORD_FORMAT_MASK) >> RECORD_FORMAT_SHIFT);
    e->position = load64(p + R_POSITION);
    e->revision = load64(p + R_REVISION);
    e->time_us = (int64_t)load64(p + R_TIME);
}

bool record_same_content(const factum_event_t *a, const factum_event_t *b) {
    return a->data_format == b->data_format && str_eq(a->id, b->id) && str_eq(a->type, b->type) &&
           str_eq(a->source, b->source) && str_eq(a->subject, b->subject) &&
           str_eq(a->datacontenttype, b->datacontenttype) && str_eq(a->correlationid, b->correlationid) &&
           str_eq(a->causationid, b->causationid) && str_eq(a->extensions, b->extensions) && str_eq(a->data, b->data);
}
