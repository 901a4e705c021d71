/* A price-time priority limit order book on integer ticks and lots.
 * Plain C, no Python: the extension module and the native benchmark both link it.
 * Semantics, events and error codes: docs/ORDER_BOOK.md. */
#ifndef FT_BOOK_H
#define FT_BOOK_H

#include <stddef.h>
#include <stdint.h>

enum { OB_BUY = 0, OB_SELL = 1 };
enum { OB_GTC = 0, OB_IOC = 1, OB_FOK = 2 };
enum { OB_STP_NONE = 0, OB_STP_CANCEL_RESTING = 1, OB_STP_CANCEL_INCOMING = 2, OB_STP_CANCEL_BOTH = 3 };
enum { OB_OP_LIMIT = 1, OB_OP_MARKET = 2, OB_OP_CANCEL = 3, OB_OP_AMEND = 4 };
enum { OB_EV_FILL = 1, OB_EV_REST = 2, OB_EV_CANCEL = 3, OB_EV_REJECT = 4, OB_EV_AMEND = 5 };
enum { OB_CR_USER = 1, OB_CR_UNFILLED = 2, OB_CR_FOK = 3, OB_CR_POST_ONLY = 4, OB_CR_STP = 5 };
enum {
    OB_OK = 0,
    OB_ERR_BAD_ID = 1,
    OB_ERR_BAD_OWNER = 2,
    OB_ERR_BAD_SIDE = 3,
    OB_ERR_BAD_PRICE = 4,
    OB_ERR_BAD_QTY = 5,
    OB_ERR_BAD_FLAGS = 6,
    OB_ERR_DUPLICATE_ID = 7,
    OB_ERR_UNKNOWN_ID = 8,
    OB_ERR_OVERFLOW = 9,
    OB_ERR_BAD_OP = 10,
    OB_ERR_NO_MEMORY = 11,
};

/* flags of a command and of a resting order */
#define OB_FLAG_TIF_MASK 3
#define OB_FLAG_POST_ONLY 4
#define OB_FLAG_STP_SHIFT 3
#define OB_FLAG_STP_MASK (3 << OB_FLAG_STP_SHIFT)
#define OB_FLAG_ALL (OB_FLAG_TIF_MASK | OB_FLAG_POST_ONLY | OB_FLAG_STP_MASK)

typedef struct {
    int64_t op, order_id, owner, side, price, qty, flags;
} ob_command;

typedef struct {
    int64_t type, order_id, other, price, qty, info;
} ob_event;

/* A growable array of events; the caller owns it and resets len between uses. */
typedef struct {
    ob_event *data;
    size_t len, cap;
} ob_events;

typedef struct ob_book ob_book;

typedef struct {
    int64_t side, price, qty, owner, flags;
} ob_order_info;

typedef struct {
    int64_t price, qty, count;
} ob_level_info;

ob_book *ob_new(void);
void ob_free(ob_book *book);
void ob_clear(ob_book *book);

/* Applies one command, appending its events to out. Returns OB_OK, or an error code with the
 * book and out unchanged (no reject event is appended: the caller decides). */
int ob_apply(ob_book *book, const ob_command *cmd, ob_events *out);

/* Applies n commands; a refused command appends an OB_EV_REJECT event and the batch goes on.
 * Returns OB_OK or OB_ERR_NO_MEMORY (events of the commands applied so far stay in out). */
int ob_apply_batch(ob_book *book, const ob_command *cmds, size_t n, ob_events *out);

void ob_events_free(ob_events *events);

size_t ob_order_count(const ob_book *book);
size_t ob_level_count(const ob_book *book, int side);
/* best price of a side, 0 when the side is empty */
int64_t ob_best_price(const ob_book *book, int side);
/* fills up to max levels of a side, best first; returns how many */
size_t ob_depth(const ob_book *book, int side, ob_level_info *levels, size_t max);
/* 1 and *info filled when the order rests, else 0 */
int ob_order(const ob_book *book, int64_t order_id, ob_order_info *info);
/* sum of one side's resting quantity, as two 64-bit halves of an unsigned 128-bit integer */
void ob_side_total(const ob_book *book, int side, uint64_t *hi, uint64_t *lo);

/* Calls fn for every resting order in priority order (bids best first, then asks); stops early
 * when fn returns non-zero and returns that value. */
typedef int (*ob_visit_fn)(void *ctx, int64_t order_id, int64_t owner, int64_t side,
                           int64_t price, int64_t qty, int64_t flags);
int ob_visit(const ob_book *book, ob_visit_fn fn, void *ctx);

/* Adds a resting order at the back of its level without matching (for restore). The caller
 * validates first; returns an error code if the id is a duplicate or memory runs out. */
int ob_insert_resting(ob_book *book, int64_t order_id, int64_t owner, int64_t side,
                      int64_t price, int64_t qty, int64_t flags);

#endif
