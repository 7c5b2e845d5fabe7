package bus

import (
	"errors"
	"fmt"
)

// ValidKafkaTopic applies Kafka's rules for topic names.
func ValidKafkaTopic(name string) error {
	switch {
	case name == "":
		return errors.New("empty name")
	case name == "." || name == "..":
		return fmt.Errorf("%q is not a valid topic name", name)
	case len(name) > 249:
		return fmt.Errorf("name of %d characters is over Kafka's 249", len(name))
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("%q: a topic name holds only letters, digits, '.', '_' and '-'", name)
		}
	}
	return nil
}
