// Package privfile reads and creates the small private files leaseguard
// keeps in its data directory (the command signing key, the embedded NATS
// users' seeds): regular files no one but their owner may read, created
// once, atomically, by whichever of several racing processes comes first.
package privfile
