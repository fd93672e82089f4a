/* OTLP ExportTraceServiceRequest bytes -> span rows, without building protobuf objects.
 *
 * The receivers' hot path (tracestore/decode.py, decode_protobuf). It reads the protobuf
 * wire format directly and applies decode.py's rules (decode_request): the same rows, the
 * same rejected spans, the same sanitising; and it writes each span's attributes as the
 * jsonb text the COPY sends, byte for byte what span_copy.jsonb would write.
 *
 * It handles what exporters send. Anything unusual (a singular field sent twice, a known
 * field with another wire type, bytes or string-table values, a key holding NUL, more
 * attributes than the limit, values nested to the depth limit, invalid UTF-8, a malformed
 * body) makes decode() return None: the caller then parses the body with the protobuf
 * runtime and decodes it in Python, which gives the exact answer (an error for a malformed
 * body) at the old speed. So this file never has to be right about an edge case, only to
 * recognise it. tests/tracestore/test_native_decode.py compares both paths on every
 * fixture and hostile payload, and FIELDS below with the protobuf descriptors.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "fixed64 fields are read as little-endian integers"
#endif

#define OK 0
#define FAIL -1 /* not handled here: the caller takes the general path */

/* Set once by configure() from decode.py, so the rules have one source. */
static int max_depth = 16;
static long flag_end_before_start = 1, flag_truncated = 2, flag_zero_timestamp = 4;
static uint64_t max_future_ns = 24ULL * 3600 * 1000000000ULL;
static PyObject *reason_trace_id, *reason_span_id, *reason_parent;

/* -- wire format ------------------------------------------------------------------------ */

typedef struct {
    const uint8_t *p, *end;
} Reader;

static int read_varint(Reader *r, uint64_t *out) {
    uint64_t value = 0;
    for (int i = 0; i < 10; i++) {
        if (r->p >= r->end) return FAIL;
        uint8_t byte = *r->p++;
        value |= (uint64_t)(byte & 0x7f) << (7 * i);
        if (!(byte & 0x80)) {
            *out = value;
            return OK;
        }
    }
    return FAIL;
}

static int read_tag(Reader *r, uint32_t *field, int *wire_type) {
    uint64_t tag;
    if (read_varint(r, &tag) || tag > UINT32_MAX || (tag >> 3) == 0) return FAIL;
    *field = (uint32_t)(tag >> 3);
    *wire_type = (int)(tag & 7);
    return OK;
}

static int read_delimited(Reader *r, Reader *sub) {
    uint64_t length;
    if (read_varint(r, &length) || length > (uint64_t)(r->end - r->p)) return FAIL;
    sub->p = r->p;
    sub->end = r->p + length;
    r->p += length;
    return OK;
}

static int read_fixed64(Reader *r, uint64_t *out) {
    if (r->end - r->p < 8) return FAIL;
    memcpy(out, r->p, 8);
    r->p += 8;
    return OK;
}

static int skip_field(Reader *r, int wire_type) {
    uint64_t ignored;
    Reader sub;
    switch (wire_type) {
    case 0:
        return read_varint(r, &ignored);
    case 1:
        return read_fixed64(r, &ignored);
    case 2:
        return read_delimited(r, &sub);
    case 5:
        if (r->end - r->p < 4) return FAIL;
        r->p += 4;
        return OK;
    default: /* groups (3, 4) never appear in OTLP; 6 and 7 are invalid */
        return FAIL;
    }
}

/* The next occurrence of the length-delimited field ``number`` in ``r``, other fields
 * skipped: 1 and ``*out`` set, 0 at the end, or FAIL. */
static int next_message(Reader *r, uint32_t number, Reader *out) {
    uint32_t field;
    int wire_type;
    while (r->p < r->end) {
        if (read_tag(r, &field, &wire_type)) return FAIL;
        if (field != number) {
            if (skip_field(r, wire_type)) return FAIL;
            continue;
        }
        if (wire_type != 2 || read_delimited(r, out)) return FAIL;
        return 1;
    }
    return 0;
}

/* -- output buffer for the attributes' JSON ---------------------------------------------- */

typedef struct {
    char *data;
    size_t len, cap;
} Buffer;

static int buf_reserve(Buffer *b, size_t more) {
    if (b->len + more <= b->cap) return OK;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more) cap *= 2;
    char *data = PyMem_Realloc(b->data, cap);
    if (!data) {
        PyErr_NoMemory();
        return FAIL;
    }
    b->data = data;
    b->cap = cap;
    return OK;
}

static int buf_put(Buffer *b, const char *s, size_t n) {
    if (buf_reserve(b, n)) return FAIL;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return OK;
}

static int buf_char(Buffer *b, char ch) { return buf_put(b, &ch, 1); }

static const char HEX[] = "0123456789abcdef";

/* Eight bytes at a time: whether any byte is below n (n <= 128), or is zero. Exact when
 * there is none; when there is one, bytes after it may be flagged too, so a flagged word
 * is then looked at byte by byte. */
#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL
static inline uint64_t any_below(uint64_t w, uint64_t n) { return (w - ONES * n) & ~w & HIGHS; }
static inline uint64_t any_zero(uint64_t w) { return (w - ONES) & ~w & HIGHS; }

/* A JSON string as json.JSONEncoder(ensure_ascii=False) writes it: only '"', '\\' and
 * control characters are escaped; the (valid) UTF-8 is copied as it is. */
static int buf_json_string(Buffer *b, const char *s, size_t n) {
    if (buf_reserve(b, n + 2)) return FAIL;
    b->data[b->len++] = '"';
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        if (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (!(any_below(w, 0x20) | any_zero(w ^ (ONES * '"')) | any_zero(w ^ (ONES * '\\')))) {
                i += 7;
                continue;
            }
        }
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\') continue;
        if (buf_put(b, s + run, i - run)) return FAIL;
        run = i + 1;
        char escape[6] = {'\\', 0, 0, 0, 0, 0};
        size_t length = 2;
        switch (ch) {
        case '"': escape[1] = '"'; break;
        case '\\': escape[1] = '\\'; break;
        case '\n': escape[1] = 'n'; break;
        case '\r': escape[1] = 'r'; break;
        case '\t': escape[1] = 't'; break;
        case '\b': escape[1] = 'b'; break;
        case '\f': escape[1] = 'f'; break;
        default:
            escape[1] = 'u';
            escape[2] = '0';
            escape[3] = '0';
            escape[4] = HEX[ch >> 4];
            escape[5] = HEX[ch & 15];
            length = 6;
        }
        if (buf_put(b, escape, length)) return FAIL;
    }
    if (buf_put(b, s + run, n - run)) return FAIL;
    return buf_char(b, '"');
}

/* -- decoding state ---------------------------------------------------------------------- */

typedef struct {
    Py_ssize_t max_value_bytes, max_attributes;
    PyObject *text; /* decode.py's _Sanitiser.text, for values that need sanitising */
    int validate_only; /* strings the rows do not keep: checked, not sanitised or counted */
    int truncated;  /* the current span had a value cut */
    Buffer json;    /* the current span's attributes; NULL-free, valid UTF-8 */
    int json_ok;    /* false when a duplicate key makes the dict and the JSON differ */
} Ctx;

/* A protobuf string as Python text, sanitised like _Sanitiser.text: values holding NUL
 * or longer than the byte limit go through ``text`` (which counts truncations), the rest
 * are used as they are. With ``json``, also appended to the JSON buffer. */
static PyObject *text_value(Ctx *c, Reader s, int json) {
    size_t n = (size_t)(s.end - s.p);
    PyObject *str = PyUnicode_DecodeUTF8((const char *)s.p, (Py_ssize_t)n, NULL);
    if (!str || c->validate_only) return str;
    size_t nuls = 0;
    for (const uint8_t *at = s.p; (at = memchr(at, 0, (size_t)(s.end - at))) != NULL; at++) nuls++;
    if (nuls || n > (size_t)c->max_value_bytes) {
        /* NUL becomes U+FFFD (3 bytes); past the limit, the value is cut. */
        if (n + 2 * nuls > (size_t)c->max_value_bytes) c->truncated = 1;
        PyObject *clean = PyObject_CallOneArg(c->text, str);
        Py_DECREF(str);
        if (!clean) return NULL;
        if (!PyUnicode_Check(clean)) {
            Py_DECREF(clean);
            PyErr_SetString(PyExc_TypeError, "text() must return str");
            return NULL;
        }
        if (json) {
            Py_ssize_t length;
            const char *utf8 = PyUnicode_AsUTF8AndSize(clean, &length);
            if (!utf8 || buf_json_string(&c->json, utf8, (size_t)length)) {
                Py_DECREF(clean);
                return NULL;
            }
        }
        return clean;
    }
    if (json && buf_json_string(&c->json, (const char *)s.p, n)) {
        Py_DECREF(str);
        return NULL;
    }
    return str;
}

/* A string field whose value is not kept: still valid UTF-8, as the runtime requires. */
static int check_utf8(Reader s) {
    PyObject *str = PyUnicode_DecodeUTF8((const char *)s.p, s.end - s.p, NULL);
    if (!str) return FAIL;
    Py_DECREF(str);
    return OK;
}

static int key_values_into(Ctx *c, Reader r, uint32_t number, PyObject *dict, int depth,
                           int json);

/* AnyValue -> Python value (and JSON), as _Sanitiser.any_value. */
static PyObject *any_value(Ctx *c, Reader r, int depth, int json) {
    uint32_t field;
    int wire_type, which = 0;
    Reader payload = {NULL, NULL};
    uint64_t scalar = 0;
    while (r.p < r.end) {
        if (read_tag(&r, &field, &wire_type)) return NULL;
        if (field >= 1 && field <= 8) {
            if (which) return NULL; /* the oneof set twice: last wins, left to the runtime */
            which = (int)field;
            static const int expected[9] = {0, 2, 0, 0, 1, 2, 2, 2, 0};
            if (wire_type != expected[field]) return NULL;
            if (wire_type == 2) {
                if (read_delimited(&r, &payload)) return NULL;
            } else if (wire_type == 1) {
                if (read_fixed64(&r, &scalar)) return NULL;
            } else if (read_varint(&r, &scalar)) {
                return NULL;
            }
        } else if (skip_field(&r, wire_type)) {
            return NULL;
        }
    }
    switch (which) {
    case 1:
        return text_value(c, payload, json);
    case 2:
        if (json && buf_put(&c->json, scalar ? "true" : "false", scalar ? 4 : 5)) return NULL;
        return PyBool_FromLong(scalar != 0);
    case 3: {
        long long number = (long long)(int64_t)scalar;
        if (json) {
            char digits[24];
            int length = snprintf(digits, sizeof digits, "%lld", number);
            if (buf_put(&c->json, digits, (size_t)length)) return NULL;
        }
        return PyLong_FromLongLong(number);
    }
    case 4: {
        double number;
        memcpy(&number, &scalar, 8);
        if (isfinite(number)) {
            if (json) {
                char *repr = PyOS_double_to_string(number, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
                if (!repr) return NULL;
                int failed = buf_put(&c->json, repr, strlen(repr));
                PyMem_Free(repr);
                if (failed) return NULL;
            }
            return PyFloat_FromDouble(number);
        }
        /* JSON (and so jsonb) has no NaN/Infinity: kept as their names. */
        const char *name = isnan(number) ? "NaN" : (number > 0 ? "Infinity" : "-Infinity");
        if (json && buf_json_string(&c->json, name, strlen(name))) return NULL;
        return PyUnicode_FromString(name);
    }
    case 5: {
        if (depth >= max_depth) return NULL;
        PyObject *list = PyList_New(0);
        if (!list) return NULL;
        if (json && buf_char(&c->json, '[')) goto array_fail;
        Reader items = payload, item;
        Py_ssize_t n = 0;
        int found;
        while ((found = next_message(&items, 1, &item)) == 1) {
            if (json && n && buf_char(&c->json, ',')) goto array_fail;
            PyObject *value = any_value(c, item, depth + 1, json);
            if (!value) goto array_fail;
            int failed = PyList_Append(list, value);
            Py_DECREF(value);
            if (failed) goto array_fail;
            n++;
        }
        if (found == FAIL || (json && buf_char(&c->json, ']'))) goto array_fail;
        return list;
    array_fail:
        Py_DECREF(list);
        return NULL;
    }
    case 6: {
        if (depth >= max_depth) return NULL;
        PyObject *dict = PyDict_New();
        if (!dict) return NULL;
        if ((json && buf_char(&c->json, '{')) ||
            key_values_into(c, payload, 1, dict, depth + 1, json) ||
            (json && buf_char(&c->json, '}'))) {
            Py_DECREF(dict);
            return NULL;
        }
        return dict;
    }
    case 0:
        if (depth >= max_depth) return NULL;
        if (json && buf_put(&c->json, "null", 4)) return NULL;
        Py_RETURN_NONE;
    default: /* bytes_value, string_value_strindex */
        return NULL;
    }
}

/* One KeyValue into ``dict`` (and the JSON buffer), as _Sanitiser.key_values does. */
static int key_value_into(Ctx *c, Reader r, PyObject *dict, int depth, int json, int first) {
    uint32_t field;
    int wire_type;
    Reader key = {NULL, NULL}, value = {NULL, NULL};
    int has_key = 0, has_value = 0;
    while (r.p < r.end) {
        if (read_tag(&r, &field, &wire_type)) return FAIL;
        if (field == 1) {
            if (has_key || wire_type != 2 || read_delimited(&r, &key)) return FAIL;
            has_key = 1;
        } else if (field == 2) {
            if (has_value || wire_type != 2 || read_delimited(&r, &value)) return FAIL;
            has_value = 1;
        } else if (field == 3) { /* key_strindex */
            return FAIL;
        } else if (skip_field(&r, wire_type)) {
            return FAIL;
        }
    }
    if (!has_key) key.p = key.end = r.end;
    if (memchr(key.p, 0, (size_t)(key.end - key.p))) return FAIL;
    PyObject *name = PyUnicode_DecodeUTF8((const char *)key.p, key.end - key.p, NULL);
    if (!name) return FAIL;
    if (json && ((!first && buf_char(&c->json, ',')) ||
                 buf_json_string(&c->json, (const char *)key.p, (size_t)(key.end - key.p)) ||
                 buf_char(&c->json, ':'))) {
        Py_DECREF(name);
        return FAIL;
    }
    if (!has_value) value.p = value.end = r.end;
    PyObject *result = any_value(c, value, depth, json);
    if (!result) {
        Py_DECREF(name);
        return FAIL;
    }
    Py_ssize_t before = PyDict_GET_SIZE(dict);
    int failed = PyDict_SetItem(dict, name, result);
    Py_DECREF(name);
    Py_DECREF(result);
    if (failed) return FAIL;
    if (PyDict_GET_SIZE(dict) == before) c->json_ok = 0; /* a key sent twice */
    return OK;
}

/* Every KeyValue of the repeated field ``number`` (1 in a KeyValueList; a message's
 * attributes field) into ``dict``, as _Sanitiser.key_values: at most max_attributes. */
static int key_values_into(Ctx *c, Reader r, uint32_t number, PyObject *dict, int depth,
                           int json) {
    Reader kv;
    Py_ssize_t count = 0;
    int found;
    while ((found = next_message(&r, number, &kv)) == 1) {
        if (++count > c->max_attributes) return FAIL;
        if (key_value_into(c, kv, dict, depth, json, count == 1)) return FAIL;
    }
    return found;
}

/* A message's repeated KeyValue field ``number`` (attributes) into a new dict. */
static PyObject *attributes_of(Ctx *c, Reader r, uint32_t number, int json) {
    PyObject *dict = PyDict_New();
    if (dict && key_values_into(c, r, number, dict, 0, json)) Py_CLEAR(dict);
    return dict;
}

static PyObject *hex_of(Reader r) {
    Py_ssize_t n = r.end - r.p;
    PyObject *str = PyUnicode_New(2 * n, 127);
    if (!str) return NULL;
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(str);
    for (Py_ssize_t i = 0; i < n; i++) {
        out[2 * i] = (Py_UCS1)HEX[r.p[i] >> 4];
        out[2 * i + 1] = (Py_UCS1)HEX[r.p[i] & 15];
    }
    return str;
}

/* Span.Event -> {"name", "time_unix_nano", "attributes"}. */
static PyObject *event_of(Ctx *c, Reader r) {
    uint32_t field;
    int wire_type;
    uint64_t time = 0;
    Reader name = {r.end, r.end};
    int has_name = 0;
    Reader all = r;
    while (r.p < r.end) {
        if (read_tag(&r, &field, &wire_type)) return NULL;
        if (field == 1) {
            if (wire_type != 1 || read_fixed64(&r, &time)) return NULL;
        } else if (field == 2) {
            if (has_name || wire_type != 2 || read_delimited(&r, &name)) return NULL;
            has_name = 1;
        } else if (field == 3) {
            if (wire_type != 2 || skip_field(&r, wire_type)) return NULL;
        } else if (skip_field(&r, wire_type)) {
            return NULL;
        }
    }
    PyObject *text = text_value(c, name, 0);
    PyObject *attributes = text ? attributes_of(c, all, 3, 0) : NULL;
    PyObject *event = attributes ? Py_BuildValue("{s:N,s:K,s:N}", "name", text, "time_unix_nano",
                                                 (unsigned long long)time, "attributes",
                                                 attributes)
                                 : NULL;
    if (!attributes) Py_XDECREF(text);
    return event;
}

/* Span.Link -> {"trace_id", "span_id", "attributes"} (ids in hex). */
static PyObject *link_of(Ctx *c, Reader r) {
    uint32_t field;
    int wire_type;
    Reader trace_id = {r.end, r.end}, span_id = {r.end, r.end}, state;
    int seen = 0;
    Reader all = r;
    while (r.p < r.end) {
        if (read_tag(&r, &field, &wire_type)) return NULL;
        if (field >= 1 && field <= 3) {
            if ((seen & (1 << field)) || wire_type != 2) return NULL;
            seen |= 1 << field;
            Reader *slot = field == 1 ? &trace_id : (field == 2 ? &span_id : &state);
            if (read_delimited(&r, slot)) return NULL;
            if (field == 3 && check_utf8(state)) return NULL;
        } else if (field == 4) {
            if (wire_type != 2 || skip_field(&r, wire_type)) return NULL;
        } else if (skip_field(&r, wire_type)) {
            return NULL;
        }
    }
    PyObject *attributes = attributes_of(c, all, 4, 0);
    if (!attributes) return NULL;
    return Py_BuildValue("{s:N,s:N,s:N}", "trace_id", hex_of(trace_id), "span_id",
                         hex_of(span_id), "attributes", attributes);
}

static int append_new(PyObject *list, PyObject *item) {
    if (!item) return FAIL;
    int failed = PyList_Append(list, item);
    Py_DECREF(item);
    return failed ? FAIL : OK;
}

/* What the spans of one ResourceSpans/ScopeSpans share: the row's service, scope and
 * resource fields. */
typedef struct {
    PyObject *resource, *service, *scope_name, *scope_version;
} Source;

typedef struct {
    uint64_t now_ns;
    PyObject *rows, *json, *rejects;
} Out;

static int reject(Out *out, PyObject *reason) { return PyList_Append(out->rejects, reason); }

static int is_zero(Reader r) {
    for (const uint8_t *p = r.p; p < r.end; p++)
        if (*p) return 0;
    return 1;
}

/* One Span -> a row's first 17 fields (decode._row without the canonical fields). */
static int span_into(Ctx *c, Reader r, const Source *src, Out *out) {
    uint32_t field;
    int wire_type, seen = 0;
    Reader trace_id = {r.end, r.end}, span_id = {r.end, r.end}, parent = {r.end, r.end};
    Reader name = {r.end, r.end}, message = {r.end, r.end}, status = {NULL, NULL}, string;
    uint64_t kind = 0, code = 0, start = 0, end = 0, varint;
    int has_status = 0;
    Reader all = r;
    /* First pass: the scalar fields (any order on the wire); sub-messages come after. */
    while (r.p < r.end) {
        if (read_tag(&r, &field, &wire_type)) return FAIL;
        switch (field) {
        case 1: case 2: case 3: case 4: case 5:
            if ((seen & (1 << field)) || wire_type != 2) return FAIL;
            seen |= 1 << field;
            if (read_delimited(&r, field == 1 ? &trace_id : field == 2 ? &span_id
                                   : field == 4 ? &parent : field == 5 ? &name : &string))
                return FAIL;
            if (field == 3 && check_utf8(string)) return FAIL;
            break;
        case 6:
            if (wire_type != 0 || read_varint(&r, &kind)) return FAIL;
            break;
        case 7: case 8:
            if (wire_type != 1 || read_fixed64(&r, field == 7 ? &start : &end)) return FAIL;
            break;
        case 9: case 11: case 13:
            if (wire_type != 2 || skip_field(&r, 2)) return FAIL;
            break;
        case 10: case 12: case 14:
            if (wire_type != 0 || read_varint(&r, &varint)) return FAIL;
            break;
        case 15:
            if (has_status || wire_type != 2 || read_delimited(&r, &status)) return FAIL;
            has_status = 1;
            break;
        case 16:
            if (wire_type != 5 || skip_field(&r, 5)) return FAIL;
            break;
        default:
            if (skip_field(&r, wire_type)) return FAIL;
        }
    }
    if (has_status) {
        int has_message = 0;
        while (status.p < status.end) {
            if (read_tag(&status, &field, &wire_type)) return FAIL;
            if (field == 2) {
                if (has_message || wire_type != 2 || read_delimited(&status, &message))
                    return FAIL;
                has_message = 1;
            } else if (field == 3) {
                if (wire_type != 0 || read_varint(&status, &code)) return FAIL;
            } else if (skip_field(&status, wire_type)) {
                return FAIL;
            }
        }
    }
    /* The runtime validates every string of the body, rejected spans' included. */
    if (check_utf8(name) || check_utf8(message)) return FAIL;
    PyObject *reason = NULL; /* borrowed */
    int has_parent = parent.end > parent.p;
    if (trace_id.end - trace_id.p != 16 || is_zero(trace_id))
        reason = reason_trace_id;
    else if (span_id.end - span_id.p != 8 || is_zero(span_id))
        reason = reason_span_id;
    else if (has_parent && (parent.end - parent.p != 8 || is_zero(parent)))
        reason = reason_parent;
    c->validate_only = reason != NULL;
    c->truncated = 0;
    c->json_ok = 1;
    c->json.len = 0;
    PyObject *attributes = NULL, *events = NULL, *links = NULL, *name_text = NULL;
    PyObject *message_text = NULL, *json = NULL, *row = NULL;
    if (buf_put(&c->json, "\x01{", 2)) goto done;
    attributes = attributes_of(c, all, 9, !reason);
    if (!attributes || buf_char(&c->json, '}')) goto done;
    events = PyList_New(0);
    links = PyList_New(0);
    if (!events || !links) goto done;
    r = all;
    while (r.p < r.end) {
        Reader sub;
        if (read_tag(&r, &field, &wire_type)) goto done;
        if (field == 11 || field == 13) {
            if (read_delimited(&r, &sub)) goto done;
            if (append_new(field == 11 ? events : links,
                           field == 11 ? event_of(c, sub) : link_of(c, sub)))
                goto done;
        } else if (skip_field(&r, wire_type)) {
            goto done;
        }
    }
    /* Text fields are sanitised before the flag is decided: a cut name counts too. */
    name_text = text_value(c, name, 0);
    message_text = name_text ? text_value(c, message, 0) : NULL;
    if (!message_text) goto done;
    if (reason) {
        c->validate_only = 0;
        if (!reject(out, reason)) row = Py_NewRef(Py_None); /* done: success */
        goto done;
    }
    int32_t kind32 = (int32_t)kind, code32 = (int32_t)code;
    if (!(kind32 >= 0 && kind32 < 32768 && code32 >= 0 && code32 < 32768)) {
        /* Enums are open: a value the smallint columns cannot hold becomes 0. */
        if (!(kind32 >= 0 && kind32 < 32768)) kind32 = 0;
        if (!(code32 >= 0 && code32 < 32768)) code32 = 0;
        c->truncated = 1;
    }
    long flags = 0;
    uint64_t now = out->now_ns;
    if (start == 0 || start > now + max_future_ns) {
        /* Not the receive time: a re-sent span must keep its key (decode.py's _row). */
        flags |= flag_zero_timestamp;
        start = end != 0 && end <= now + max_future_ns ? end : 0;
    }
    if (end == 0) end = start;
    if (end < start) {
        flags |= flag_end_before_start;
        end = start;
    }
    if (end > now + max_future_ns) {
        flags |= flag_zero_timestamp;
        end = start;
    }
    if (c->truncated) flags |= flag_truncated;
    if (c->json_ok) {
        json = PyBytes_FromStringAndSize(c->json.data, (Py_ssize_t)c->json.len);
        if (!json) goto done;
    } else {
        json = Py_NewRef(Py_None);
    }
    PyObject *parent_id = has_parent
                              ? PyBytes_FromStringAndSize((const char *)parent.p, 8)
                              : Py_NewRef(Py_None);
    /* The fields of row_fields[] below, in its order. */
    row = Py_BuildValue("(y#y#NOiKKiOOOOOOOOl)", (const char *)trace_id.p, (Py_ssize_t)16,
                        (const char *)span_id.p, (Py_ssize_t)8, parent_id, name_text,
                        (int)kind32, (unsigned long long)start, (unsigned long long)end,
                        (int)code32, message_text, src->service, src->scope_name,
                        src->scope_version, attributes, src->resource, events, links, flags);
    if (!row) goto done;
    if (PyList_Append(out->rows, row) || PyList_Append(out->json, json)) {
        Py_CLEAR(row);
        goto done;
    }
done:;
    int ok = row != NULL;
    Py_XDECREF(row);
    Py_XDECREF(json);
    Py_XDECREF(attributes);
    Py_XDECREF(events);
    Py_XDECREF(links);
    Py_XDECREF(name_text);
    Py_XDECREF(message_text);
    return ok ? OK : FAIL;
}

/* ResourceSpans and ScopeSpans share a layout: 1 their header (resource, scope), sent at
 * most once, anywhere; 2 the children; 3 schema_url. The header's bytes, empty if absent. */
static int header_of(Reader r, Reader *header) {
    uint32_t field;
    int wire_type, has_header = 0;
    *header = (Reader){r.end, r.end};
    while (r.p < r.end) {
        Reader sub;
        if (read_tag(&r, &field, &wire_type)) return FAIL;
        if (field >= 1 && field <= 3) {
            if (wire_type != 2 || read_delimited(&r, &sub)) return FAIL;
            if (field == 1 && has_header++) return FAIL;
            if (field == 1) *header = sub;
            if (field == 3 && check_utf8(sub)) return FAIL;
        } else if (skip_field(&r, wire_type)) {
            return FAIL;
        }
    }
    return OK;
}

static int scope_spans_into(Ctx *c, Reader r, Source *src, Out *out) {
    uint32_t field;
    int wire_type, ok = FAIL;
    Reader scope, spans = r, span;
    if (header_of(r, &scope)) return FAIL;
    Reader name = {scope.end, scope.end}, version = {scope.end, scope.end};
    int seen = 0;
    Reader all_scope = scope;
    while (scope.p < scope.end) {
        if (read_tag(&scope, &field, &wire_type)) return FAIL;
        if (field == 1 || field == 2) {
            if ((seen & (1 << field)) || wire_type != 2) return FAIL;
            seen |= 1 << field;
            if (read_delimited(&scope, field == 1 ? &name : &version)) return FAIL;
        } else if (field == 3) {
            if (wire_type != 2 || skip_field(&scope, 2)) return FAIL;
        } else if (field == 4) {
            uint64_t ignored;
            if (wire_type != 0 || read_varint(&scope, &ignored)) return FAIL;
        } else if (skip_field(&scope, wire_type)) {
            return FAIL;
        }
    }
    /* Scope attributes are not stored, but the runtime would validate them. */
    c->validate_only = 1;
    PyObject *scope_attributes = attributes_of(c, all_scope, 3, 0);
    c->validate_only = 0;
    if (!scope_attributes) return FAIL;
    Py_DECREF(scope_attributes);
    src->scope_name = text_value(c, name, 0);
    src->scope_version = src->scope_name ? text_value(c, version, 0) : NULL;
    if (!src->scope_version) goto done;
    int found;
    while ((found = next_message(&spans, 2, &span)) == 1)
        if (span_into(c, span, src, out)) goto done;
    ok = found;
done:
    Py_CLEAR(src->scope_name);
    Py_CLEAR(src->scope_version);
    return ok;
}

static int resource_spans_into(Ctx *c, Reader r, Out *out) {
    uint32_t field;
    int wire_type, ok = FAIL;
    Reader resource, scopes = r, scope_spans;
    if (header_of(r, &resource)) return FAIL;
    /* Resource: attributes (1), dropped count (2); entity_refs (3) is left to the runtime. */
    Reader check = resource;
    while (check.p < check.end) {
        uint64_t ignored;
        if (read_tag(&check, &field, &wire_type)) return FAIL;
        if (field == 1) {
            if (wire_type != 2 || skip_field(&check, 2)) return FAIL;
        } else if (field == 2) {
            if (wire_type != 0 || read_varint(&check, &ignored)) return FAIL;
        } else if (field == 3 || skip_field(&check, wire_type)) {
            return FAIL;
        }
    }
    Source src = {NULL, NULL, NULL, NULL};
    src.resource = attributes_of(c, resource, 1, 0);
    if (!src.resource) return FAIL;
    PyObject *service = PyDict_GetItemString(src.resource, "service.name"); /* borrowed */
    src.service = service && PyUnicode_Check(service) ? Py_NewRef(service)
                                                      : PyUnicode_FromStringAndSize("", 0);
    if (!src.service) goto done;
    int found;
    while ((found = next_message(&scopes, 2, &scope_spans)) == 1)
        if (scope_spans_into(c, scope_spans, &src, out)) goto done;
    ok = found;
done:
    Py_XDECREF(src.resource);
    Py_XDECREF(src.service);
    return ok;
}

/* -- module ------------------------------------------------------------------------------ */

static PyObject *decode(PyObject *self, PyObject *args) {
    Py_buffer body;
    unsigned long long now_ns;
    Ctx c = {0};
    if (!PyArg_ParseTuple(args, "y*KnnO:decode", &body, &now_ns, &c.max_value_bytes,
                          &c.max_attributes, &c.text))
        return NULL;
    if (!reason_trace_id) {
        PyBuffer_Release(&body);
        PyErr_SetString(PyExc_RuntimeError, "configure() has not been called");
        return NULL;
    }
    Out out = {now_ns, PyList_New(0), PyList_New(0), PyList_New(0)};
    PyObject *result = NULL;
    int ok = out.rows && out.json && out.rejects;
    Reader r = {body.buf, (const uint8_t *)body.buf + body.len}, resource_spans;
    int found = 0;
    while (ok && (found = next_message(&r, 1, &resource_spans)) == 1)
        ok = !resource_spans_into(&c, resource_spans, &out);
    ok = ok && found == 0;
    if (ok) {
        result = PyTuple_Pack(3, out.rows, out.json, out.rejects);
    } else if (!PyErr_Occurred() || !PyErr_ExceptionMatches(PyExc_MemoryError)) {
        /* Anything this decoder leaves to the general path, including invalid UTF-8. */
        PyErr_Clear();
        result = Py_NewRef(Py_None);
    }
    Py_XDECREF(out.rows);
    Py_XDECREF(out.json);
    Py_XDECREF(out.rejects);
    PyMem_Free(c.json.data);
    PyBuffer_Release(&body);
    return result;
}

static PyObject *configure(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"max_depth",        "max_future_ns",   "flag_end_before_start",
                            "flag_truncated",   "flag_zero_timestamp", "reason_trace_id",
                            "reason_span_id",   "reason_parent",   NULL};
    PyObject *trace, *span, *parent;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "iKlllUUU:configure", names, &max_depth,
                                     &max_future_ns, &flag_end_before_start, &flag_truncated,
                                     &flag_zero_timestamp, &trace, &span, &parent))
        return NULL;
    Py_XSETREF(reason_trace_id, Py_NewRef(trace));
    Py_XSETREF(reason_span_id, Py_NewRef(span));
    Py_XSETREF(reason_parent, Py_NewRef(parent));
    Py_RETURN_NONE;
}

PyDoc_STRVAR(decode_doc,
             "decode(body, now_ns, max_value_bytes, max_attributes, text)\n--\n\n"
             "(rows, attributes_json, rejected_reasons) for an ExportTraceServiceRequest body,\n"
             "or None when the body needs the general path (see tracestore/decode.py).");

static PyMethodDef methods[] = {
    {"decode", decode, METH_VARARGS, decode_doc},
    {"configure", (PyCFunction)(void (*)(void))configure, METH_VARARGS | METH_KEYWORDS,
     "Set decode.py's limits, flags and rejection reasons."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "tracestore._otlp",
                                    "OTLP protobuf -> span rows (see decode.py).", -1,
                                    methods, NULL, NULL, NULL, NULL};

/* The fields this decoder reads or checks, per message: {message: {number: wire type}}.
 * A test compares it with the protobuf descriptors, so a new field in opentelemetry-proto
 * is noticed here. */
static int add_fields(PyObject *fields, const char *message, const char *spec) {
    PyObject *map = PyDict_New();
    if (!map) return FAIL;
    int number, wire_type, used;
    while (sscanf(spec, "%d:%d%n", &number, &wire_type, &used) == 2) {
        PyObject *k = PyLong_FromLong(number), *v = PyLong_FromLong(wire_type);
        int failed = !k || !v || PyDict_SetItem(map, k, v);
        Py_XDECREF(k);
        Py_XDECREF(v);
        if (failed) {
            Py_DECREF(map);
            return FAIL;
        }
        spec += used;
        while (*spec == ' ') spec++;
    }
    int failed = PyDict_SetItemString(fields, message, map);
    Py_DECREF(map);
    return failed ? FAIL : OK;
}

/* The row span_row builds, field by field: the module's ROW_FIELDS, which decode.py
 * checks at import against the decoder's fields of tracestore/span_fields.py. */
static const char *row_fields[] = {
    "trace_id",     "span_id",  "parent_span_id", "name",           "kind",
    "start_time_ns", "end_time_ns", "status_code", "status_message", "service_name",
    "scope_name",   "scope_version", "attributes", "resource_attributes", "events",
    "links",        "flags",
};

static PyObject *row_field_names(void) {
    Py_ssize_t n = (Py_ssize_t)(sizeof row_fields / sizeof row_fields[0]);
    PyObject *names = PyTuple_New(n);
    if (!names) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = PyUnicode_FromString(row_fields[i]);
        if (!name) {
            Py_DECREF(names);
            return NULL;
        }
        PyTuple_SET_ITEM(names, i, name);
    }
    return names;
}

PyMODINIT_FUNC PyInit__otlp(void) {
    PyObject *m = PyModule_Create(&module);
    PyObject *fields = m ? PyDict_New() : NULL;
    if (!fields) {
        Py_XDECREF(m);
        return NULL;
    }
    const char *P = "opentelemetry.proto.";
    static const char *table[][2] = {
        {"collector.trace.v1.ExportTraceServiceRequest", "1:2"},
        {"trace.v1.ResourceSpans", "1:2 2:2 3:2"},
        {"resource.v1.Resource", "1:2 2:0 3:2"},
        {"trace.v1.ScopeSpans", "1:2 2:2 3:2"},
        {"common.v1.InstrumentationScope", "1:2 2:2 3:2 4:0"},
        {"trace.v1.Span", "1:2 2:2 3:2 4:2 5:2 6:0 7:1 8:1 9:2 10:0 11:2 12:0 13:2 14:0 15:2 16:5"},
        {"trace.v1.Span.Event", "1:1 2:2 3:2 4:0"},
        {"trace.v1.Span.Link", "1:2 2:2 3:2 4:2 5:0 6:5"},
        {"trace.v1.Status", "2:2 3:0"},
        {"common.v1.KeyValue", "1:2 2:2 3:0"},
        {"common.v1.AnyValue", "1:2 2:0 3:0 4:1 5:2 6:2 7:2 8:0"},
        {"common.v1.ArrayValue", "1:2"},
        {"common.v1.KeyValueList", "1:2"},
        {"common.v1.EntityRef", "1:2 2:2 3:2 4:2"},
    };
    char name[128];
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        snprintf(name, sizeof name, "%s%s", P, table[i][0]);
        if (add_fields(fields, name, table[i][1])) {
            Py_DECREF(fields);
            Py_DECREF(m);
            return NULL;
        }
    }
    if (PyModule_AddObject(m, "FIELDS", fields)) {
        Py_DECREF(fields);
        Py_DECREF(m);
        return NULL;
    }
    PyObject *names = row_field_names();
    if (!names || PyModule_AddObject(m, "ROW_FIELDS", names)) {
        Py_XDECREF(names);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
