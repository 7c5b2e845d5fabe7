package check

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Object is one decoded manifest: a typed Kubernetes API object, or one of
// the local CRD types below.
type Object struct {
	Kind string
	Name string
	Obj  any
}

// deserializer decodes the built-in kinds leaseguard's manifests use, and
// refuses unknown and duplicate fields (strict mode).
var deserializer = func() runtime.Decoder {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme, networkingv1.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer()
}()

// Decode splits a multi-document YAML stream and decodes every document
// strictly. A kind that is neither built in nor one of the known CRDs is an
// error.
func Decode(stream []byte) ([]Object, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	var out []Object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		o, err := decodeOne(doc)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
}

func decodeOne(doc []byte) (Object, error) {
	// Strict YAML first: duplicate keys are an error.
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return Object{}, fmt.Errorf("yaml: %w\n%s", err, doc)
	}
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(js, &head); err != nil {
		return Object{}, err
	}
	o := Object{Kind: head.Kind, Name: head.Metadata.Name}
	if crd := newCRD(head.APIVersion, head.Kind); crd != nil {
		dec := json.NewDecoder(bytes.NewReader(js))
		dec.DisallowUnknownFields()
		if err := dec.Decode(crd); err != nil {
			return o, fmt.Errorf("%s %s: %w", head.Kind, o.Name, err)
		}
		o.Obj = crd
		return o, nil
	}
	obj, _, err := deserializer.Decode(js, nil, nil)
	if err != nil {
		return o, fmt.Errorf("%s %s: %w", head.Kind, o.Name, err)
	}
	o.Obj = obj
	return o, nil
}
