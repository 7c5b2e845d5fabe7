// Command vault is a test-only build of HashiCorp Vault for leaseguard's
// end-to-end tests (make e2e). It lives in its own module so that Vault's
// dependencies never enter leaseguard's build. scripts/ensure-vault.sh
// builds it into a cache directory outside the repository.
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
