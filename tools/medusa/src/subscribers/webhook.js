// Forwards Medusa's in-process events to erpsync as signed webhooks, since Medusa ships none.
//
// Each event is POSTed as JSON {"id", "type", "occurred_at", "data"} to $ERPSYNC_WEBHOOK_URL with
// the hex HMAC-SHA256 of the raw body (key $ERPSYNC_WEBHOOK_SECRET) in `x-signature-sha256`, the
// event name in `x-medusa-topic` and a delivery id in `x-medusa-delivery-id`. Medusa's payloads
// carry ids only ({"id": "prod_…"}, {"order_id", "fulfillment_id"}), so the receiver fetches the
// current state. Delivery is best effort (the local event bus does not retry): erpsync's
// reconciliation pull covers a lost delivery.
//
// The exports are `exports.default` and `exports.config`: assigning `module.exports = handler`
// and then `module.exports.default = handler` makes a self-referential export that crashes
// Medusa's loader (shops.md §4).
const crypto = require('crypto')

exports.default = async function erpsyncWebhook({ event }) {
  const url = process.env.ERPSYNC_WEBHOOK_URL
  const secret = process.env.ERPSYNC_WEBHOOK_SECRET
  if (!url || !secret) {
    return
  }
  const body = JSON.stringify({
    id: crypto.randomUUID(),
    type: event.name,
    occurred_at: new Date().toISOString(),
    data: event.data,
  })
  const signature = crypto.createHmac('sha256', secret).update(body).digest('hex')
  try {
    await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-signature-sha256': signature,
        'x-medusa-topic': event.name,
        'x-medusa-delivery-id': JSON.parse(body).id,
      },
      body,
      signal: AbortSignal.timeout(5000),
    })
  } catch (error) {
    console.warn(`erpsync webhook: delivering ${event.name} to ${url} failed: ${error}`)
  }
}

exports.config = {
  event: [
    'product.created',
    'product.updated',
    'product.deleted',
    'product-variant.created',
    'product-variant.updated',
    'customer.created',
    'customer.updated',
    'order.placed',
    'order.updated',
    'order.canceled',
    'order.completed',
    'order.fulfillment_created',
    'shipment.created',
    'delivery.created',
    'inventory-level.created',
    'inventory-level.updated',
    'inventory-item.updated',
  ],
}
