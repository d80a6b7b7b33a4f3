package main

import (
	"github.com/spf13/cobra"
)

// addCompletionCmd adds cobra's "completion" command (bash, zsh, fish,
// powershell) and "help" command now rather than lazily in Execute, so that
// they carry the same documentation as every other command (a test walks
// the tree). Execute finds them present and keeps them.
func addCompletionCmd(root *cobra.Command) {
	root.InitDefaultCompletionCmd()
	root.InitDefaultHelpCmd()
	examples := map[string]string{
		"completion": `  dmvpn completion bash > /etc/bash_completion.d/dmvpn
  source <(dmvpn completion bash)
  dmvpn completion fish | source`,
		"bash": `  source <(dmvpn completion bash)
  dmvpn completion bash > /etc/bash_completion.d/dmvpn`,
		"zsh": `  dmvpn completion zsh > "${fpath[1]}/_dmvpn"
  dmvpn completion zsh > /usr/local/share/zsh/site-functions/_dmvpn`,
		"fish": `  dmvpn completion fish | source
  dmvpn completion fish > ~/.config/fish/completions/dmvpn.fish`,
		"powershell": `  dmvpn completion powershell | Out-String | Invoke-Expression`,
		"help": `  dmvpn help run
  dmvpn help show`,
	}
	for _, c := range root.Commands() {
		switch c.Name() {
		case "completion":
			c.Long += `
The Debian package installs the bash, zsh and fish scripts where those shells
find them (/usr/share/bash-completion/completions/dmvpn,
/usr/share/zsh/vendor-completions/_dmvpn,
/usr/share/fish/vendor_completions.d/dmvpn.fish); a new shell completes
commands, flags, "show" views and config files.
`
			c.Example = examples["completion"]
			for _, sub := range c.Commands() {
				sub.Example = examples[sub.Name()]
			}
		case "help":
			c.Example = examples["help"]
		}
	}
}
