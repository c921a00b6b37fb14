<?php
/**
 * Removes the plugin's option when the plugin is deleted.
 *
 * @package SimulcastPlayer
 */

declare(strict_types=1);

if ( ! defined( 'WP_UNINSTALL_PLUGIN' ) ) {
	exit;
}

delete_option( 'simulcast_player_options' );
