#!/bin/sh
# Adds Inventory Sync to this user's application menu and both commands to ~/.local/bin,
# from wherever this folder was unpacked; `install-desktop-entry --remove` takes them away.
# (The .deb package does this for every user instead; see the README, "Installing".)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
data=${XDG_DATA_HOME:-$HOME/.local/share}
bin=$HOME/.local/bin
entry=$data/applications/inventory-sync-app.desktop

if [ "${1:-}" = "--remove" ]; then
    rm -f "$entry"
    for icon in "$data"/icons/hicolor/*/apps/inventory-sync.png; do
        [ -e "$icon" ] && rm -f "$icon"
    done
    for command in inventory-sync inventory-sync-app; do
        [ -L "$bin/$command" ] && rm -f "$bin/$command"
    done
    echo "removed the menu entry and the commands in $bin"
    exit 0
fi

mkdir -p "$data/applications" "$bin"
# the menu entry runs this folder's app by its full path
sed -e "s|^Exec=.*|Exec=\"$here/inventory-sync-app\"|" -e "s|^TryExec=.*|TryExec=$here/inventory-sync-app|" \
    "$here/share/applications/inventory-sync-app.desktop" > "$entry"
for dir in "$here"/share/icons/hicolor/*/apps; do
    size=$(basename "$(dirname "$dir")")
    mkdir -p "$data/icons/hicolor/$size/apps"
    cp "$dir/inventory-sync.png" "$data/icons/hicolor/$size/apps/inventory-sync.png"
done
for command in inventory-sync inventory-sync-app; do
    ln -sf "$here/$command" "$bin/$command"
done
if command -v update-desktop-database >/dev/null 2>&1; then
    update-desktop-database -q "$data/applications" || true
fi
echo "added Inventory Sync to the application menu ($entry)"
case ":$PATH:" in
    *":$bin:"*) echo "inventory-sync and inventory-sync-app are on your PATH ($bin)" ;;
    *) echo "linked inventory-sync and inventory-sync-app into $bin; add it to PATH (it is, after a new login, on Debian and Ubuntu)" ;;
esac
