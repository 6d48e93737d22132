// olm-validate checks an OLM registry+v1 bundle directory with the
// validators of github.com/operator-framework/api, the same ones
// `operator-sdk bundle validate --select-optional suite=operatorframework`
// runs: the default Bundle, ClusterServiceVersion and
// CustomResourceDefinition validators, then OperatorHubV2,
// StandardCapabilities, StandardCategories, AlphaDeprecatedAPIs and
// GoodPractices.
//
// Usage: olm-validate BUNDLE_DIR [K8S_VERSION]
//
// Prints every result (one line per error or warning, and a line per
// validator that found nothing); exits 1 if any validator reported an
// error, 2 if the bundle cannot be loaded. Warnings do not fail.
// K8S_VERSION (e.g. 1.34) is handed to the validators that check removed
// APIs against a Kubernetes release; without it they use minKubeVersion.
package main

import (
	"fmt"
	"os"

	"github.com/operator-framework/api/pkg/manifests"
	"github.com/operator-framework/api/pkg/validation"
	"github.com/operator-framework/api/pkg/validation/errors"
	interfaces "github.com/operator-framework/api/pkg/validation/interfaces"
)

func main() {
	if len(os.Args) < 2 || len(os.Args) > 3 {
		fmt.Fprintln(os.Stderr, "usage: olm-validate BUNDLE_DIR [K8S_VERSION]")
		os.Exit(2)
	}
	dir := os.Args[1]
	bundle, err := manifests.GetBundleFromDir(dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "olm-validate: loading %s: %v\n", dir, err)
		os.Exit(2)
	}
	if bundle.CSV == nil {
		fmt.Fprintf(os.Stderr, "olm-validate: %s has no ClusterServiceVersion\n", dir)
		os.Exit(2)
	}
	fmt.Printf("bundle %s: channels %v (default %q), %d objects, %d CRDs, %d bytes (%d gzipped)\n",
		bundle.Name, bundle.Channels, bundle.DefaultChannel,
		len(bundle.Objects), len(bundle.V1CRDs), bundle.Size, bundle.CompressedSize)

	objs := bundle.ObjectsToValidate()
	if len(os.Args) == 3 {
		objs = append(objs, map[string]string{"k8s-version": os.Args[2]})
	}

	groups := []struct {
		name       string
		validators interfaces.Validators
	}{
		{"default (Bundle, ClusterServiceVersion, CustomResourceDefinition)", validation.DefaultBundleValidators},
		{"OperatorHubV2", interfaces.Validators{validation.OperatorHubV2Validator}},
		{"StandardCapabilities", interfaces.Validators{validation.StandardCapabilitiesValidator}},
		{"StandardCategories", interfaces.Validators{validation.StandardCategoriesValidator}},
		{"AlphaDeprecatedAPIs", interfaces.Validators{validation.AlphaDeprecatedAPIsValidator}},
		{"GoodPractices", interfaces.Validators{validation.GoodPracticesValidator}},
	}
	nErr, nWarn := 0, 0
	for _, g := range groups {
		found := 0
		for _, result := range g.validators.Validate(objs...) {
			for _, e := range result.Errors {
				found++
				switch e.Level {
				case errors.LevelError:
					nErr++
				default:
					nWarn++
				}
				fmt.Printf("%s: %s [%s]: %s\n", g.name, e.Level, result.Name, e.Error())
			}
			for _, w := range result.Warnings {
				found++
				nWarn++
				fmt.Printf("%s: %s [%s]: %s\n", g.name, w.Level, result.Name, w.Error())
			}
		}
		if found == 0 {
			fmt.Printf("%s: ok\n", g.name)
		}
	}
	fmt.Printf("%d errors, %d warnings\n", nErr, nWarn)
	if nErr > 0 {
		os.Exit(1)
	}
}
