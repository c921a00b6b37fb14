<?php
/**
 * Plugin Name:       Simulcast Player
 * Plugin URI:        https://github.com/simulcast/simulcast
 * Description:       Embed your self-hosted Simulcast live stream with the [simulcast_player] shortcode or the Simulcast Player block; viewers can tip you over Lightning, straight to your own wallet.
 * Version:           1.0.0
 * Requires at least: 6.1
 * Requires PHP:      8.1
 * Author:            Simulcast
 * License:           GPL-2.0-or-later
 * License URI:       https://www.gnu.org/licenses/gpl-2.0.html
 * Text Domain:       simulcast-player
 *
 * @package SimulcastPlayer
 */

declare(strict_types=1);

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

define( 'SIMULCAST_PLAYER_VERSION', '1.0.0' );
define( 'SIMULCAST_PLAYER_DIR', __DIR__ );

require_once __DIR__ . '/includes/class-options.php';
require_once __DIR__ . '/includes/class-embed.php';
require_once __DIR__ . '/includes/class-settings-page.php';

add_action( 'init', array( 'Simulcast_Player_Embed', 'register' ) );
add_action( 'admin_menu', array( 'Simulcast_Player_Settings_Page', 'add_menu' ) );
add_action( 'admin_init', array( 'Simulcast_Player_Settings_Page', 'register' ) );
add_filter(
	'plugin_action_links_' . plugin_basename( __FILE__ ),
	array( 'Simulcast_Player_Settings_Page', 'action_links' )
);
