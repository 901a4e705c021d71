/* Price-time priority limit order book. See book.h and docs/ORDER_BOOK.md.
 *
 * Layout: each side keeps its price levels in a sorted array, best price LAST, so that the
 * common case (activity near the top of the book) touches the tail of the array and inserting
 * or removing a level moves few entries. Levels hold a doubly linked FIFO of orders. Order ids
 * map to orders through an open-addressing hash table. Orders and levels come from pools, so the
 * hot path never calls malloc.
 *
 * Every command is validated and every allocation it may need is reserved before the book is
 * touched, so a refused command leaves the book exactly as it was. */
#include "book.h"

#include <stdlib.h>
#include <string.h>

typedef struct order_s order_t;
typedef struct level_s level_t;

struct order_s {
    int64_t id, owner, price, qty;
    order_t *prev, *next;
    level_t *level;
    int32_t side, flags;
};

struct level_s {
    int64_t price, total, count;
    order_t *head, *tail;
    level_t *next_free;
};

typedef struct {
    int64_t *keys;      /* sort key: price for bids, -price for asks; ascending, best last */
    level_t **levels;  /* parallel to keys */
    size_t len, cap;
} ob_side;

typedef struct {
    int64_t key; /* 0 = empty: order ids are positive */
    order_t *order;
} ob_slot;

typedef struct ob_chunk {
    struct ob_chunk *next;
} ob_chunk;

struct ob_book {
    ob_side sides[2];
    ob_slot *slots;
    size_t slot_mask, slot_shift, order_count;
    order_t *free_orders;
    level_t *free_levels;
    ob_chunk *chunks; /* every pool allocation, freed together */
};

#define CHUNK_ITEMS 4096

/* ---------- pools ---------- */

static int reserve_order(ob_book *b) {
    if (b->free_orders) return OB_OK;
    ob_chunk *c = malloc(sizeof(ob_chunk) + CHUNK_ITEMS * sizeof(order_t));
    if (!c) return OB_ERR_NO_MEMORY;
    c->next = b->chunks;
    b->chunks = c;
    order_t *items = (order_t *)(c + 1);
    for (size_t i = 0; i < CHUNK_ITEMS; i++) {
        items[i].next = b->free_orders;
        b->free_orders = &items[i];
    }
    return OB_OK;
}

static int reserve_level(ob_book *b) {
    if (b->free_levels) return OB_OK;
    ob_chunk *c = malloc(sizeof(ob_chunk) + CHUNK_ITEMS * sizeof(level_t));
    if (!c) return OB_ERR_NO_MEMORY;
    c->next = b->chunks;
    b->chunks = c;
    level_t *items = (level_t *)(c + 1);
    for (size_t i = 0; i < CHUNK_ITEMS; i++) {
        items[i].next_free = b->free_levels;
        b->free_levels = &items[i];
    }
    return OB_OK;
}

static inline order_t *take_order(ob_book *b) {
    order_t *o = b->free_orders;
    b->free_orders = o->next;
    return o;
}

static inline void give_order(ob_book *b, order_t *o) {
    o->next = b->free_orders;
    b->free_orders = o;
}

static inline level_t *take_level(ob_book *b) {
    level_t *l = b->free_levels;
    b->free_levels = l->next_free;
    return l;
}

static inline void give_level(ob_book *b, level_t *l) {
    l->next_free = b->free_levels;
    b->free_levels = l;
}

/* ---------- id -> order hash table (linear probing, backward-shift deletion) ---------- */

static inline size_t slot_of(const ob_book *b, int64_t id) {
    return (size_t)(((uint64_t)id * 0x9E3779B97F4A7C15ull) >> b->slot_shift);
}

static order_t *find_order(const ob_book *b, int64_t id) {
    size_t i = slot_of(b, id);
    for (;;) {
        const ob_slot *s = &b->slots[i];
        if (s->key == id) return s->order;
        if (s->key == 0) return NULL;
        i = (i + 1) & b->slot_mask;
    }
}

static void put_slot(ob_slot *slots, size_t mask, size_t shift, int64_t id, order_t *o) {
    size_t i = (size_t)(((uint64_t)id * 0x9E3779B97F4A7C15ull) >> shift);
    while (slots[i].key != 0) i = (i + 1) & mask;
    slots[i].key = id;
    slots[i].order = o;
}

static int alloc_slots(ob_book *b, size_t bits) {
    size_t n = (size_t)1 << bits;
    ob_slot *slots = calloc(n, sizeof(ob_slot));
    if (!slots) return OB_ERR_NO_MEMORY;
    ob_slot *old = b->slots;
    size_t old_n = old ? b->slot_mask + 1 : 0;
    b->slots = slots;
    b->slot_mask = n - 1;
    b->slot_shift = 64 - bits;
    for (size_t i = 0; i < old_n; i++)
        if (old[i].key) put_slot(slots, b->slot_mask, b->slot_shift, old[i].key, old[i].order);
    free(old);
    return OB_OK;
}

/* room for one more order, keeping the load factor at or below one half */
static int reserve_slot(ob_book *b) {
    size_t n = b->slot_mask + 1;
    if ((b->order_count + 1) * 2 <= n) return OB_OK;
    return alloc_slots(b, 64 - b->slot_shift + 1);
}

static void remove_slot(ob_book *b, int64_t id) {
    size_t mask = b->slot_mask;
    size_t i = slot_of(b, id);
    while (b->slots[i].key != id) i = (i + 1) & mask;
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (b->slots[j].key == 0) break;
        size_t home = slot_of(b, b->slots[j].key);
        /* move j back into the hole at i unless its home lies cyclically in (i, j] */
        int stays = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            b->slots[i] = b->slots[j];
            i = j;
        }
    }
    b->slots[i].key = 0;
    b->slots[i].order = NULL;
}

/* ---------- price levels ---------- */

static inline int64_t sort_key(int side, int64_t price) { return side == OB_BUY ? price : -price; }

/* first index whose key is >= key */
static size_t lower_bound(const ob_side *s, int64_t key) {
    size_t lo = 0, hi = s->len;
    /* activity clusters at the best end: try the top few levels first */
    if (hi > 0 && s->keys[hi - 1] < key) return hi;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->keys[mid] < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int reserve_side(ob_side *s) {
    if (s->len < s->cap) return OB_OK;
    size_t cap = s->cap ? s->cap * 2 : 64;
    int64_t *keys = realloc(s->keys, cap * sizeof(int64_t));
    if (!keys) return OB_ERR_NO_MEMORY;
    s->keys = keys;
    level_t **levels = realloc(s->levels, cap * sizeof(level_t *));
    if (!levels) return OB_ERR_NO_MEMORY;
    s->levels = levels;
    s->cap = cap;
    return OB_OK;
}

/* where a price's level is, or would be inserted, on a side: found is NULL when it does not exist */
typedef struct {
    size_t index;
    int64_t key;
    level_t *found;
} level_slot;

static level_slot find_slot(const ob_side *s, int side, int64_t price) {
    level_slot slot = {0, sort_key(side, price), NULL};
    slot.index = lower_bound(s, slot.key);
    if (slot.index < s->len && s->keys[slot.index] == slot.key) slot.found = s->levels[slot.index];
    return slot;
}

/* the slot's level, created at its index if missing; room was reserved by the caller */
static level_t *level_at(ob_book *b, int side, level_slot slot, int64_t price) {
    if (slot.found) return slot.found;
    ob_side *s = &b->sides[side];
    size_t i = slot.index;
    level_t *l = take_level(b);
    l->price = price;
    l->total = 0;
    l->count = 0;
    l->head = l->tail = NULL;
    size_t tail = s->len - i;
    if (tail) {
        memmove(&s->keys[i + 1], &s->keys[i], tail * sizeof(int64_t));
        memmove(&s->levels[i + 1], &s->levels[i], tail * sizeof(level_t *));
    }
    s->keys[i] = slot.key;
    s->levels[i] = l;
    s->len++;
    return l;
}

/* removes an empty level; returns the index it had */
static size_t drop_level(ob_book *b, int side, level_t *l) {
    ob_side *s = &b->sides[side];
    size_t i;
    if (s->len && s->levels[s->len - 1] == l) {
        i = s->len - 1;
    } else {
        i = lower_bound(s, sort_key(side, l->price));
        size_t tail = s->len - i - 1;
        memmove(&s->keys[i], &s->keys[i + 1], tail * sizeof(int64_t));
        memmove(&s->levels[i], &s->levels[i + 1], tail * sizeof(level_t *));
    }
    s->len--;
    give_level(b, l);
    return i;
}

static inline void link_back(level_t *l, order_t *o) {
    o->level = l;
    o->next = NULL;
    o->prev = l->tail;
    if (l->tail)
        l->tail->next = o;
    else
        l->head = o;
    l->tail = o;
    l->total += o->qty;
    l->count++;
}

static inline void unlink_order(level_t *l, order_t *o) {
    if (o->prev)
        o->prev->next = o->next;
    else
        l->head = o->next;
    if (o->next)
        o->next->prev = o->prev;
    else
        l->tail = o->prev;
    l->total -= o->qty;
    l->count--;
}

/* takes a resting order out of the book; its level goes when empty; the order stays allocated */
/* takes a resting order out of the book; returns the index of its level if that level went
 * (it was empty), else SIZE_MAX */
static size_t detach(ob_book *b, order_t *o) {
    level_t *l = o->level;
    unlink_order(l, o);
    return l->count == 0 ? drop_level(b, o->side, l) : SIZE_MAX;
}

static void forget(ob_book *b, order_t *o) {
    remove_slot(b, o->id);
    b->order_count--;
    give_order(b, o);
}

/* ---------- events ---------- */

static int grow_events(ob_events *out, size_t need) {
    if (out->len + need <= out->cap) return OB_OK;
    size_t cap = out->cap ? out->cap : 64;
    while (cap < out->len + need) cap *= 2;
    ob_event *data = realloc(out->data, cap * sizeof(ob_event));
    if (!data) return OB_ERR_NO_MEMORY;
    out->data = data;
    out->cap = cap;
    return OB_OK;
}

typedef struct {
    ob_events *out;
    int failed; /* an event could not be stored: reported as OB_ERR_NO_MEMORY */
} emitter;

static inline void emit(emitter *e, int64_t type, int64_t id, int64_t other, int64_t price,
                        int64_t qty, int64_t info) {
    ob_events *out = e->out;
    if (out->len == out->cap && grow_events(out, 1) != OB_OK) {
        e->failed = 1;
        return;
    }
    ob_event *ev = &out->data[out->len++];
    ev->type = type;
    ev->order_id = id;
    ev->other = other;
    ev->price = price;
    ev->qty = qty;
    ev->info = info;
}

/* ---------- matching ---------- */

typedef struct {
    int64_t id, owner, price, qty;
    int side, stp;
    int limited; /* 0 for a market order without protection */
} incoming;

static inline int crosses(const incoming *in, int64_t level_price) {
    if (!in->limited) return 1;
    return in->side == OB_BUY ? level_price <= in->price : level_price >= in->price;
}

/* fill-or-kill: can the whole quantity fill, given self-trade prevention? */
static int fok_fillable(const ob_book *b, const incoming *in) {
    const ob_side *opp = &b->sides[1 - in->side];
    int64_t need = in->qty;
    for (size_t i = opp->len; i-- > 0;) {
        const level_t *l = opp->levels[i];
        if (!crosses(in, l->price)) return 0;
        for (const order_t *m = l->head; m; m = m->next) {
            if (in->stp != OB_STP_NONE && m->owner == in->owner) {
                if (in->stp == OB_STP_CANCEL_RESTING) continue;
                return 0;
            }
            if (m->qty >= need) return 1;
            need -= m->qty;
        }
    }
    return 0;
}

/* Matches against the opposite side; returns the remaining quantity, or -1 when self-trade
 * prevention canceled the incoming order. */
static int64_t match(ob_book *b, const incoming *in, emitter *e) {
    ob_side *opp = &b->sides[1 - in->side];
    int opp_side = 1 - in->side;
    int64_t remaining = in->qty;
    while (remaining > 0 && opp->len > 0) {
        level_t *l = opp->levels[opp->len - 1];
        if (!crosses(in, l->price)) break;
        order_t *m = l->head;
        while (m && remaining > 0) {
            order_t *next = m->next;
            if (in->stp != OB_STP_NONE && m->owner == in->owner) {
                if (in->stp != OB_STP_CANCEL_INCOMING) {
                    emit(e, OB_EV_CANCEL, m->id, m->owner, m->price, m->qty, OB_CR_STP);
                    unlink_order(l, m);
                    forget(b, m);
                }
                if (in->stp != OB_STP_CANCEL_RESTING) {
                    emit(e, OB_EV_CANCEL, in->id, in->owner, in->limited ? in->price : 0, remaining,
                         OB_CR_STP);
                    if (l->count == 0) drop_level(b, opp_side, l);
                    return -1;
                }
            } else {
                int64_t q = m->qty < remaining ? m->qty : remaining;
                m->qty -= q;
                l->total -= q;
                remaining -= q;
                emit(e, OB_EV_FILL, in->id, m->id, m->price, q, m->qty);
                if (m->qty == 0) {
                    l->head = next;
                    if (next)
                        next->prev = NULL;
                    else
                        l->tail = NULL;
                    l->count--;
                    forget(b, m);
                }
            }
            m = next;
        }
        if (l->count == 0) drop_level(b, opp_side, l);
    }
    return remaining;
}

/* ---------- commands ---------- */

static int check_ids(int64_t id, int64_t owner, int64_t side) {
    if (id <= 0) return OB_ERR_BAD_ID;
    if (owner < 0) return OB_ERR_BAD_OWNER;
    if (side != OB_BUY && side != OB_SELL) return OB_ERR_BAD_SIDE;
    return OB_OK;
}

/* enough pool, table and array room for one resting order at a possibly new level */
static int reserve_resting(ob_book *b, int side) {
    int err;
    if ((err = reserve_order(b)) || (err = reserve_level(b)) || (err = reserve_slot(b)) ||
        (err = reserve_side(&b->sides[side])))
        return err;
    return OB_OK;
}

static inline int overflows(const level_slot *slot, int64_t add) {
    return slot->found && slot->found->total > INT64_MAX - add;
}

static int post_only_crosses(const ob_book *b, int side, int64_t price) {
    const ob_side *opp = &b->sides[1 - side];
    if (opp->len == 0) return 0;
    int64_t best = opp->levels[opp->len - 1]->price;
    return side == OB_BUY ? price >= best : price <= best;
}

static int place_limit(ob_book *b, const ob_command *c, emitter *e) {
    int err = check_ids(c->order_id, c->owner, c->side);
    if (err) return err;
    if (c->price <= 0) return OB_ERR_BAD_PRICE;
    if (c->qty <= 0) return OB_ERR_BAD_QTY;
    int64_t tif = c->flags & OB_FLAG_TIF_MASK;
    if ((c->flags & ~(int64_t)OB_FLAG_ALL) || tif > OB_FOK) return OB_ERR_BAD_FLAGS;
    if (find_order(b, c->order_id)) return OB_ERR_DUPLICATE_ID;
    int side = (int)c->side;
    /* one search serves the overflow check and the resting: matching never touches this side */
    level_slot slot = {0, 0, NULL};
    if (tif == OB_GTC) {
        slot = find_slot(&b->sides[side], side, c->price);
        if (overflows(&slot, c->qty)) return OB_ERR_OVERFLOW;
        if ((err = reserve_resting(b, side))) return err;
    }
    if ((c->flags & OB_FLAG_POST_ONLY) && post_only_crosses(b, side, c->price)) {
        emit(e, OB_EV_CANCEL, c->order_id, c->owner, c->price, c->qty, OB_CR_POST_ONLY);
        return OB_OK;
    }
    incoming in = {c->order_id, c->owner, c->price, c->qty, side,
                   (int)((c->flags & OB_FLAG_STP_MASK) >> OB_FLAG_STP_SHIFT), 1};
    if (tif == OB_FOK && !fok_fillable(b, &in)) {
        emit(e, OB_EV_CANCEL, c->order_id, c->owner, c->price, c->qty, OB_CR_FOK);
        return OB_OK;
    }
    int64_t remaining = match(b, &in, e);
    if (remaining <= 0) return OB_OK;
    if (tif != OB_GTC) {
        emit(e, OB_EV_CANCEL, c->order_id, c->owner, c->price, remaining, OB_CR_UNFILLED);
        return OB_OK;
    }
    order_t *o = take_order(b);
    o->id = c->order_id;
    o->owner = c->owner;
    o->price = c->price;
    o->qty = remaining;
    o->side = side;
    o->flags = (int32_t)(c->flags & ~(int64_t)OB_FLAG_TIF_MASK);
    link_back(level_at(b, side, slot, c->price), o);
    put_slot(b->slots, b->slot_mask, b->slot_shift, o->id, o);
    b->order_count++;
    emit(e, OB_EV_REST, o->id, o->owner, o->price, remaining, side);
    return OB_OK;
}

static int place_market(ob_book *b, const ob_command *c, emitter *e) {
    int err = check_ids(c->order_id, c->owner, c->side);
    if (err) return err;
    if (c->price < 0) return OB_ERR_BAD_PRICE;
    if (c->qty <= 0) return OB_ERR_BAD_QTY;
    int64_t tif = c->flags & OB_FLAG_TIF_MASK;
    if ((c->flags & ~(int64_t)OB_FLAG_ALL) || tif > OB_FOK || (c->flags & OB_FLAG_POST_ONLY))
        return OB_ERR_BAD_FLAGS;
    if (find_order(b, c->order_id)) return OB_ERR_DUPLICATE_ID;
    incoming in = {c->order_id, c->owner, c->price, c->qty, (int)c->side,
                   (int)((c->flags & OB_FLAG_STP_MASK) >> OB_FLAG_STP_SHIFT), c->price > 0};
    if (tif == OB_FOK && !fok_fillable(b, &in)) {
        emit(e, OB_EV_CANCEL, c->order_id, c->owner, c->price, c->qty, OB_CR_FOK);
        return OB_OK;
    }
    int64_t remaining = match(b, &in, e);
    if (remaining > 0)
        emit(e, OB_EV_CANCEL, c->order_id, c->owner, c->price, remaining, OB_CR_UNFILLED);
    return OB_OK;
}

static int cancel_order(ob_book *b, const ob_command *c, emitter *e) {
    if (c->order_id <= 0) return OB_ERR_BAD_ID;
    order_t *o = find_order(b, c->order_id);
    if (!o) return OB_ERR_UNKNOWN_ID;
    emit(e, OB_EV_CANCEL, o->id, o->owner, o->price, o->qty, OB_CR_USER);
    detach(b, o);
    forget(b, o);
    return OB_OK;
}

static int amend_order(ob_book *b, const ob_command *c, emitter *e) {
    if (c->order_id <= 0) return OB_ERR_BAD_ID;
    if (c->price <= 0) return OB_ERR_BAD_PRICE;
    if (c->qty <= 0) return OB_ERR_BAD_QTY;
    order_t *o = find_order(b, c->order_id);
    if (!o) return OB_ERR_UNKNOWN_ID;
    int side = o->side;
    if (c->price == o->price) {
        level_t *l = o->level;
        if (c->qty > o->qty) {
            if (l->total - o->qty > INT64_MAX - c->qty) return OB_ERR_OVERFLOW;
            unlink_order(l, o);
            o->qty = c->qty;
            link_back(l, o);
            emit(e, OB_EV_AMEND, o->id, o->owner, o->price, o->qty, 0);
        } else {
            l->total -= o->qty - c->qty;
            o->qty = c->qty;
            emit(e, OB_EV_AMEND, o->id, o->owner, o->price, o->qty, 1);
        }
        return OB_OK;
    }
    if ((o->flags & OB_FLAG_POST_ONLY) && post_only_crosses(b, side, c->price)) {
        emit(e, OB_EV_CANCEL, o->id, o->owner, o->price, o->qty, OB_CR_POST_ONLY);
        detach(b, o);
        forget(b, o);
        return OB_OK;
    }
    level_slot slot = find_slot(&b->sides[side], side, c->price);
    if (overflows(&slot, c->qty)) return OB_ERR_OVERFLOW;
    int err;
    if ((err = reserve_level(b)) || (err = reserve_side(&b->sides[side]))) return err;
    emit(e, OB_EV_AMEND, o->id, o->owner, c->price, c->qty, 0);
    size_t dropped = detach(b, o);
    if (dropped < slot.index) slot.index--; /* the old level left from below the new one's place */
    incoming in = {o->id, o->owner, c->price, c->qty, side,
                   (o->flags & OB_FLAG_STP_MASK) >> OB_FLAG_STP_SHIFT, 1};
    int64_t remaining = match(b, &in, e);
    if (remaining <= 0) {
        forget(b, o);
        return OB_OK;
    }
    o->price = c->price;
    o->qty = remaining;
    link_back(level_at(b, side, slot, c->price), o);
    return OB_OK;
}

/* ---------- public API ---------- */

ob_book *ob_new(void) {
    ob_book *b = calloc(1, sizeof(ob_book));
    if (!b) return NULL;
    if (alloc_slots(b, 10) != OB_OK) {
        free(b);
        return NULL;
    }
    return b;
}

static void release_all(ob_book *b) {
    for (ob_chunk *c = b->chunks; c;) {
        ob_chunk *next = c->next;
        free(c);
        c = next;
    }
    for (int s = 0; s < 2; s++) {
        free(b->sides[s].keys);
        free(b->sides[s].levels);
    }
    free(b->slots);
}

void ob_free(ob_book *b) {
    if (!b) return;
    release_all(b);
    free(b);
}

void ob_clear(ob_book *b) {
    release_all(b);
    memset(b, 0, sizeof(*b));
    if (alloc_slots(b, 10) != OB_OK) {
        /* leaves an empty book that will try again on its next insert */
        b->slots = NULL;
    }
}

int ob_apply(ob_book *b, const ob_command *c, ob_events *out) {
    if (!b->slots && alloc_slots(b, 10) != OB_OK) return OB_ERR_NO_MEMORY;
    emitter e = {out, 0};
    int err;
    switch (c->op) {
    case OB_OP_LIMIT:
        err = place_limit(b, c, &e);
        break;
    case OB_OP_MARKET:
        err = place_market(b, c, &e);
        break;
    case OB_OP_CANCEL:
        err = cancel_order(b, c, &e);
        break;
    case OB_OP_AMEND:
        err = amend_order(b, c, &e);
        break;
    default:
        err = OB_ERR_BAD_OP;
    }
    if (err == OB_OK && e.failed) return OB_ERR_NO_MEMORY;
    return err;
}

int ob_apply_batch(ob_book *b, const ob_command *cmds, size_t n, ob_events *out) {
    for (size_t i = 0; i < n; i++) {
        int err = ob_apply(b, &cmds[i], out);
        if (err == OB_ERR_NO_MEMORY) return err;
        if (err != OB_OK) {
            emitter e = {out, 0};
            emit(&e, OB_EV_REJECT, cmds[i].order_id, 0, 0, 0, err);
            if (e.failed) return OB_ERR_NO_MEMORY;
        }
    }
    return OB_OK;
}

void ob_events_free(ob_events *events) {
    free(events->data);
    events->data = NULL;
    events->len = events->cap = 0;
}

size_t ob_order_count(const ob_book *b) { return b->order_count; }

size_t ob_level_count(const ob_book *b, int side) { return b->sides[side].len; }

int64_t ob_best_price(const ob_book *b, int side) {
    const ob_side *s = &b->sides[side];
    return s->len ? s->levels[s->len - 1]->price : 0;
}

size_t ob_depth(const ob_book *b, int side, ob_level_info *levels, size_t max) {
    const ob_side *s = &b->sides[side];
    size_t n = 0;
    for (size_t i = s->len; i-- > 0 && n < max; n++) {
        levels[n].price = s->levels[i]->price;
        levels[n].qty = s->levels[i]->total;
        levels[n].count = s->levels[i]->count;
    }
    return n;
}

int ob_order(const ob_book *b, int64_t order_id, ob_order_info *info) {
    if (order_id <= 0 || !b->slots) return 0;
    const order_t *o = find_order(b, order_id);
    if (!o) return 0;
    info->side = o->side;
    info->price = o->price;
    info->qty = o->qty;
    info->owner = o->owner;
    info->flags = o->flags;
    return 1;
}

void ob_side_total(const ob_book *b, int side, uint64_t *hi, uint64_t *lo) {
    unsigned __int128 sum = 0;
    const ob_side *s = &b->sides[side];
    for (size_t i = 0; i < s->len; i++) sum += (uint64_t)s->levels[i]->total;
    *hi = (uint64_t)(sum >> 64);
    *lo = (uint64_t)sum;
}

int ob_visit(const ob_book *b, ob_visit_fn fn, void *ctx) {
    for (int side = 0; side < 2; side++) {
        const ob_side *s = &b->sides[side];
        for (size_t i = s->len; i-- > 0;) {
            for (const order_t *o = s->levels[i]->head; o; o = o->next) {
                int r = fn(ctx, o->id, o->owner, o->side, o->price, o->qty, o->flags);
                if (r) return r;
            }
        }
    }
    return 0;
}

int ob_insert_resting(ob_book *b, int64_t order_id, int64_t owner, int64_t side, int64_t price,
                      int64_t qty, int64_t flags) {
    int err = check_ids(order_id, owner, side);
    if (err) return err;
    if (price <= 0) return OB_ERR_BAD_PRICE;
    if (qty <= 0) return OB_ERR_BAD_QTY;
    if (flags & ~(int64_t)(OB_FLAG_POST_ONLY | OB_FLAG_STP_MASK)) return OB_ERR_BAD_FLAGS;
    if (!b->slots && alloc_slots(b, 10) != OB_OK) return OB_ERR_NO_MEMORY;
    if (find_order(b, order_id)) return OB_ERR_DUPLICATE_ID;
    level_slot slot = find_slot(&b->sides[side], (int)side, price);
    if (overflows(&slot, qty)) return OB_ERR_OVERFLOW;
    if ((err = reserve_resting(b, (int)side))) return err;
    order_t *o = take_order(b);
    o->id = order_id;
    o->owner = owner;
    o->price = price;
    o->qty = qty;
    o->side = (int32_t)side;
    o->flags = (int32_t)flags;
    link_back(level_at(b, (int)side, slot, price), o);
    put_slot(b->slots, b->slot_mask, b->slot_shift, order_id, o);
    b->order_count++;
    return OB_OK;
}
